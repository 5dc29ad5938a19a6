"""The teacher-output cache: the teacher's image features (or its top-k logits) on every
training view that a group of runs will show it, computed once (``dho teacher cache``) and
read by each run (spec key ``teacher_cache``).

What is cached (default: features, exact).  The L2-normalised image features of the
teacher's image tower (fp16 by default), not its logits: the zero-shot head (``100 f W``)
and Tip-Adapter-F's cache model are cheap functions of the features, applied at training
time, so one cache serves every teacher built on the same image tower (zero-shot and each
label level's Tip-Adapter-F), every student, method and label level that shares (dataset,
seed, crop scale).  A feature costs ``2 * D`` bytes whatever the class count (RN50: 2 KB,
ViT-H/14: 2 KB) and KD sees the teacher's full distribution.

Top-k mode (``--topk K``, spec key ``teacher_cache_topk``, suite key ``teacher_cache:
{topk: K}``).  For a zero-shot teacher only: per view the K largest logits of its head as
log-probabilities ``logit - lse`` (fp16), their class indices (int16; int32 past 32767
classes), ``lse`` = the logsumexp of all C logits and the log of the remaining mass
``1 - sum of the top-K probabilities`` (both fp32, from the fp32 logits): ``4K + 8`` bytes
per view (K = 10: 48 bytes against 2048 for a 1024-d feature).  At training time
:func:`topk_logits` rebuilds C logits: the top-K classes get their own logits back and
every other class the same logit ``lse + log(rest / (C - K))``.  So softmax (T = 1) gives
each top-K class its exact probability (to the fp16 rounding of its log-probability) and
spreads the rest evenly over the other C - K classes; the argmax, the top-1 probability
(pseudo-labels) and the teacher's test accuracy are exact.  Every method sees these
rebuilt logits as the teacher's; KD at a temperature T divides them by T, so the top-K
classes keep their exact ratios ``exp((t_i - t_j) / T)`` while each other class gets
``(rest / (C - K))^(1/T)`` (relative to ``exp(lse)``), the T-softened mean rather than the
softened tail itself: for T > 1 the tail gets more mass than the true softened teacher
gives it (power-mean inequality), equal for T = 1, and a method that reads single tail
logits (DKD's non-target term, DHKD's per-class binary KL, WKD) sees them flattened (on the
demo, top-3 of 12 classes cost DHKD up to 8 points; KD, SSKD and DHO moved within seed
noise: README, "Scale").  The
head is baked into the file, so a Tip-Adapter-F teacher (its head needs features) and a
method that needs the embedding (``kd_feature``) are refused with a top-k cache.  The
build measures what it changes on the real teacher (:class:`TopkFidelity`, stored as
``topk_fidelity`` and printed): the mass outside the top K, and the KL divergence and total
variation between the teacher's softened distribution and the rebuilt one at T = 1 and 2.

Which views.  A view is fixed by its key (:mod:`dho.data.views`); the cache command
replays the schedule of each run spec it is given (:meth:`Schedule.teacher_keys`) and
stores the union of their keys, sorted, plus the teacher's features (or top-k) on the
test split (for ``teacher_test_acc``).  A run asking for a key the cache lacks fails with
a :class:`~dho.errors.ConfigError` naming the cache (it was built for other runs).

Validity.  The file records the dataset, a hash of its train split, the augmentation seed,
``crop_scale_min``, the crop resolution, the teacher's *encoder identity* (open_clip
model, pretrained tag or weights file and that file's sha256) and ``topk`` with, for a
top-k cache, the *head identity* (:func:`~dho.models.head_identity`: the sha256 of the
head's tensors).  A run whose spec (``teacher_cache_topk``) or teacher file disagrees is
refused with one line naming the field; a changed weights file or zero-shot head therefore
invalidates the cache.  The student's own resolution may differ from the cache's: it sees
the same crop box.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import CheckpointError, ConfigError
from .io import atomic_torch_save

FORMAT, VERSION = "dho-teacher-cache", 1
META_KEYS = ("dataset", "train_hash", "seed", "crop_scale_min", "crop_interpolation", "image_size", "encoder",
             "topk", "head")
TOPK_TABLES = ("logprobs", "indices", "lse", "tail")  # per view, in top-k mode (topk_pack)


def train_hash(train_items: Sequence[tuple[str, int]]) -> str:
    blob = json.dumps([[str(r), int(y)] for r, y in train_items], separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_schedule(spec, source, use_unlabeled: bool = True):
    """The :class:`~dho.data.views.Schedule` of a run spec (its split computed or loaded)."""
    from .data import splits, views

    manifest = (splits.SplitManifest.load(spec.split_manifest) if spec.split_manifest
                else splits.make_split(source, spec.split, spec.split_seed))
    train_items = source.items("train")
    lab, unl = views.train_indices(train_items, manifest.labeled, manifest.unlabeled)
    return views.Schedule(seed=spec.seed, n_train=len(train_items), labeled=lab, unlabeled=unl,
                          batch_size=spec.batch_size, unlabeled_batch_size=spec.unlabeled_batch_size,
                          epoch_length=spec.epoch_length, use_unlabeled=use_unlabeled)


def _common(specs: Sequence, key: str) -> Any:
    values = {json.dumps(getattr(s, key), sort_keys=True) for s in specs}
    if len(values) != 1:
        raise ConfigError(f"teacher cache: the run specs disagree on key '{key}' ({', '.join(sorted(values))}); "
                          f"one cache serves runs with one {key}")
    return getattr(specs[0], key)


def cache_meta(source, spec, teacher: dict, image_size: int | None = None) -> dict[str, Any]:
    """What a cache must agree on with a run (``spec``) besides the view keys, ``teacher``
    being the teacher file's content (:func:`~dho.models.read_teacher_file`): its encoder
    identity and, for a top-k cache (spec key ``teacher_cache_topk``), k and the head's
    identity (:func:`~dho.models.head_identity`; not hashed for a feature cache)."""
    from .models import encoder_identity, head_identity

    topk = spec.teacher_cache_topk
    return {"dataset": source.name, "train_hash": train_hash(source.items("train")), "seed": int(spec.seed),
            "crop_scale_min": float(spec.crop_scale_min), "crop_interpolation": str(spec.crop_interpolation),
            "image_size": int(image_size or spec.image_size), "encoder": encoder_identity(teacher),
            "topk": None if topk is None else int(topk), "head": None if topk is None else head_identity(teacher)}


# -- top-k logits ------------------------------------------------------------------------
def index_dtype(num_classes: int):
    import torch

    return torch.int16 if num_classes <= 32767 else torch.int32


def topk_pack(logits, k: int) -> dict[str, Any]:
    """Per row of ``logits`` [B, C]: the k largest as log-probabilities ``logit - lse``
    (fp16, sorted), their class indices (int16; int32 past 32767 classes), ``lse`` = the
    logsumexp of all C logits and ``tail`` = log(1 - sum of the top-k probabilities), the
    log of the remaining mass, computed from the fp32 logits (both fp32; tail -inf when
    k = C).  4k + 8 bytes per row."""
    import torch

    z = logits.float()
    num_classes = z.shape[1]
    lse = torch.logsumexp(z, dim=1)
    top, idx = z.topk(k, dim=1)
    if k < num_classes:
        tail = torch.logsumexp(z.scatter(1, idx, float("-inf")), dim=1) - lse
    else:
        tail = torch.full_like(lse, float("-inf"))
    return {"logprobs": (top - lse[:, None]).half(), "indices": idx.to(index_dtype(num_classes)),
            "lse": lse, "tail": tail}


def topk_logits(packed: dict[str, Any], num_classes: int):
    """Full float32 logits [B, C] from :func:`topk_pack`'s tables: the top-k classes get
    their logits back (``lse + logprob``), every other class the same logit
    ``lse + tail - log(C - k)``, so that softmax gives each top-k class its own probability
    and spreads the remaining mass evenly over the other C - k classes.  At a temperature
    T != 1 softmax(z / T) keeps the top-k classes' ratios, but the tail is the T-th root
    of its mean probability per class, not the T-softened tail (more tail mass for T > 1)."""
    lp, lse = packed["logprobs"].float(), packed["lse"].float()[:, None]
    k = lp.shape[1]
    if k < num_classes:
        fill = lse + packed["tail"].float()[:, None] - math.log(num_classes - k)
    else:
        fill = lse  # every class is in the top k: nothing is filled
    z = fill.expand(-1, num_classes).clone()
    return z.scatter_(1, packed["indices"].long(), lse + lp)


FIDELITY_TEMPERATURES = (1.0, 2.0)  # softmax; the KD temperature of the authors' scripts


class TopkFidelity:
    """What a top-k cache changes in the targets KD reads, measured on the real teacher's
    logits while the cache is built: per view the mass outside the top k (T = 1) and, at each
    temperature T of :data:`FIDELITY_TEMPERATURES`, KL(p_T || q_T) and the total variation
    between the teacher's softened distribution p_T and the rebuilt one q_T
    (:func:`topk_logits`); their means and maxima over the views."""

    def __init__(self):
        self.n, self.sums, self.maxs = 0, {}, {}

    def add(self, logits, packed: dict[str, Any]) -> None:
        import torch

        z = logits.float()
        rebuilt = topk_logits(packed, z.shape[1])
        rows = {"tail_mass": packed["tail"].float().exp()}
        for t in FIDELITY_TEMPERATURES:
            logp, logq = torch.log_softmax(z / t, dim=1), torch.log_softmax(rebuilt / t, dim=1)
            rows[f"kl_T{t:g}"] = (logp.exp() * (logp - logq)).sum(dim=1).clamp_min(0)
            rows[f"tv_T{t:g}"] = 0.5 * (logp.exp() - logq.exp()).abs().sum(dim=1)
        for name, v in rows.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(v.double().sum())
            self.maxs[name] = max(self.maxs.get(name, 0.0), float(v.max()))
        self.n += int(z.shape[0])

    def summary(self) -> dict[str, float]:
        return {**{f"mean_{k}": v / max(1, self.n) for k, v in self.sums.items()},
                **{f"max_{k}": v for k, v in self.maxs.items()}, "views": self.n}


def topk_encoder(teacher, k: int, fidelity: TopkFidelity):
    """``images -> topk_pack(teacher logits)``, adding each batch to ``fidelity``."""
    def fn(x):
        logits = teacher.logits_from_features(teacher.encode(x))
        packed = topk_pack(logits, k)
        fidelity.add(logits, packed)
        return packed
    return fn


# -- building ------------------------------------------------------------------------------
def _encode(fn, loader, device, progress: bool, desc: str) -> dict[str, Any]:
    """``fn(images on device)`` -> dict of per-image tensors, over ``loader``, concatenated on cpu."""
    import torch

    from tqdm.auto import tqdm

    parts: dict[str, list] = {}
    for batch in tqdm(loader, desc=desc, unit="batch", disable=not progress):
        for name, t in fn(batch[0].to(device, non_blocking=True)).items():
            parts.setdefault(name, []).append(t.cpu())
    return {name: torch.cat(ts).contiguous() for name, ts in parts.items()}


def _check_topk(topk: int | None, specs: Sequence, teacher_file, file_dict: dict, num_classes: int) -> None:
    """``--topk``: the specs ask for it (key teacher_cache_topk), 1 <= k <= C, zero-shot head."""
    asked = _common(specs, "teacher_cache_topk")
    if asked != topk:
        raise ConfigError(f"teacher cache --topk {topk}: the run specs have key 'teacher_cache_topk' = {asked}; "
                          f"they would refuse this cache (give the same k to both)")
    if topk is not None and not 1 <= topk <= num_classes:
        raise ConfigError(f"teacher cache --topk {topk}: expected an integer in [1, {num_classes}] (the class count)")
    if topk is not None and file_dict["kind"] != "zeroshot":
        raise ConfigError(f"teacher cache --topk {topk}: teacher file {teacher_file} is a {file_dict['kind']} "
                          f"teacher, whose head needs the image features; build a feature cache (no --topk)")


def build_cache(teacher_file: str | Path, specs: Sequence, out: str | Path, image_size: int | None = None,
                dtype: str = "float16", batch_size: int = 256, num_workers: int = 0, device: str = "auto",
                progress: bool = False, topk: int | None = None) -> dict[str, Any]:
    """Compute and write the cache for ``specs`` (RunSpecs sharing dataset, seed, crop scale):
    the image features, or with ``topk`` the head's top-k logits (:func:`topk_pack`)."""
    import torch

    from .data import ImageList, eval_transform, get_dataset, views
    from .models import load_teacher, read_teacher_file
    from .train import resolve_device

    if not specs:
        raise ConfigError("teacher cache: no run specs given (--spec)")
    dataset, root = _common(specs, "dataset"), _common(specs, "data_root")
    seed, scale = _common(specs, "seed"), _common(specs, "crop_scale_min")
    interpolation = _common(specs, "crop_interpolation")
    size = int(image_size or _common(specs, "image_size"))
    if dtype not in ("float16", "float32"):
        raise ConfigError(f"teacher cache: dtype {dtype!r}: expected float16 or float32")
    source = get_dataset(dataset, root)
    file_dict = read_teacher_file(teacher_file, expected_classes=source.num_classes)
    _check_topk(topk, specs, teacher_file, file_dict, source.num_classes)
    keys = np.unique(np.concatenate([run_schedule(s, source).teacher_keys(s.epochs) for s in specs]))
    dev = resolve_device(device)
    teacher = load_teacher(teacher_file, dev, expected_classes=source.num_classes)
    store = getattr(torch, dtype)
    fidelity = TopkFidelity()
    if topk is None:
        fn = lambda x: {"features": teacher.encode(x).to(store)}  # noqa: E731
    else:
        fn = topk_encoder(teacher, topk, fidelity)
    loader_kw = dict(num_workers=num_workers, pin_memory=dev.type == "cuda")
    train_set = views.ViewDataset(source, source.items("train"), size, scale, seed, mask_labels=True,
                                  interpolation=interpolation)
    batches = [keys[i:i + batch_size].tolist() for i in range(0, len(keys), batch_size)]
    train = _encode(fn, torch.utils.data.DataLoader(train_set, batch_sampler=batches, **loader_kw),
                    dev, progress, "teacher cache (train views)")
    test_items = source.items("test")
    test_loader = torch.utils.data.DataLoader(ImageList(source, test_items, eval_transform(size)),
                                              batch_size=batch_size, **loader_kw)
    train_fidelity = fidelity.summary() if topk is not None else None  # the training views only
    test = _encode(fn, test_loader, dev, progress, "teacher cache (test)")
    record = {"format": FORMAT, "version": VERSION,
              **cache_meta(source, specs[0], file_dict, size),
              "keys": torch.from_numpy(keys), "num_classes": source.num_classes, **train,
              **{f"test_{name}": t for name, t in test.items()},
              "test_labels": torch.tensor([int(y) for _, y in test_items], dtype=torch.int64),
              "teacher_forwards": int(len(keys) + len(test_items)), "runs": len(specs),
              "topk_fidelity": train_fidelity}
    atomic_torch_save(record, out)
    per_view = sum(t.element_size() * t[0].numel() for t in train.values()) if len(keys) else 0
    return {"views": int(len(keys)), "test_images": len(test_items), "topk": topk, "bytes_per_view": per_view,
            "dim": int(train["features"].shape[1]) if topk is None else None, "bytes": Path(out).stat().st_size,
            "topk_fidelity": train_fidelity}


class TeacherCache:
    """A loaded cache (memory-mapped); :meth:`outputs` looks up packed view keys."""

    def __init__(self, path: str | Path, record: dict[str, Any]):
        self.path = Path(path)
        self.meta = {k: record.get(k) for k in META_KEYS}
        self.topk = record.get("topk")
        self.num_classes = record.get("num_classes")
        self.keys = record["keys"].numpy()
        names = ("features",) if self.topk is None else TOPK_TABLES
        self.tables = {name: record[name] for name in names}
        self.test_tables = {name: record[f"test_{name}"] for name in names}
        self.features_table = self.tables.get("features")
        self.test_labels = record["test_labels"]

    @classmethod
    def load(cls, path: str | Path, expected: dict[str, Any]) -> "TeacherCache":
        """Load ``path`` and check it against ``expected`` (:func:`cache_meta` of the run;
        ``image_size`` is not compared: the student may see the crop at another size)."""
        import torch

        path = Path(path)
        if not path.is_file():
            raise CheckpointError(f"teacher cache not found: {path} (make it with `dho teacher cache`)")
        try:
            record = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types for bad files
            raise CheckpointError(f"teacher cache {path} cannot be read (corrupt or truncated?): "
                                  f"{type(e).__name__}") from None
        if not isinstance(record, dict) or record.get("format") != FORMAT or record.get("version") != VERSION:
            raise CheckpointError(f"{path} is not a dho teacher cache (format {FORMAT} v{VERSION})")
        for key in META_KEYS:  # (a feature cache written before top-k existed has neither topk nor head)
            if key != "image_size" and record.get(key) != expected[key]:
                raise ConfigError(f"teacher cache {path} was made for {key} = {record.get(key)!r}, this run has "
                                  f"{expected[key]!r}; rebuild it (dho teacher cache) or set teacher_cache: null")
        return cls(path, record)

    def _rows(self, keys):
        """Row of each packed view key [B] (a tensor index); ConfigError for a key not cached."""
        import torch

        from .data.views import unpack_keys

        k = keys.cpu().numpy().astype(np.int64)
        pos = np.searchsorted(self.keys, k)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        missing = (len(self.keys) == 0) | (self.keys[pos_c] != k)
        if np.any(missing):
            e, p, i = (int(a[0]) for a in unpack_keys(k[missing][:1]))
            raise ConfigError(f"teacher cache {self.path} has no view (epoch {e}, pass {p}, image {i}): it was "
                              f"built for other runs; rebuild it with this run's spec")
        return torch.from_numpy(pos_c)

    def features(self, keys):
        """Cached features (stored dtype, cpu) of packed view keys [B] -> [B, D]."""
        if self.topk is not None:
            raise ConfigError(f"teacher cache {self.path} holds top-{self.topk} logits, not image features")
        return self.features_table[self._rows(keys)]

    def _outputs(self, tables: dict[str, Any], head, device) -> dict[str, Any]:
        if self.topk is not None:
            return {"logits": topk_logits({n: t.to(device, non_blocking=True) for n, t in tables.items()},
                                          self.num_classes)}
        f = tables["features"].to(device, non_blocking=True).float()
        return {"embedding": f, "logits": head.logits_from_features(f)}

    def outputs(self, keys, head, device) -> dict[str, Any]:
        """The teacher outputs on the views ``keys`` [B] (float32 on ``device``): ``logits``
        (``head`` applied to the features, or rebuilt from the top-k) and, in a feature
        cache, ``embedding`` (the features)."""
        rows = self._rows(keys)
        return self._outputs({n: t[rows] for n, t in self.tables.items()}, head, device)

    def test_logits(self, head, device):
        """The teacher's logits on the test split (float32 on ``device``), in label order."""
        return self._outputs(self.test_tables, head, device)["logits"]


def load_specs(files: Sequence[str]) -> list:
    """RunSpecs from files holding one spec mapping or a list of them (YAML/JSON)."""
    from .spec import RunSpec, _yaml_load

    specs = []
    for f in files:
        p = Path(f)
        if not p.is_file():
            raise ConfigError(f"spec file not found: {p}")
        d = _yaml_load(p.read_text())
        for i, item in enumerate(d if isinstance(d, list) else [d]):
            specs.append(RunSpec.from_dict(item, source=f"{p}[{i}]" if isinstance(d, list) else str(p)))
    return specs


def _cmd_cache(args) -> int:
    specs = load_specs(args.spec)
    info = build_cache(args.teacher, specs, args.out, image_size=args.image_size, dtype=args.dtype,
                       batch_size=args.batch_size, num_workers=args.num_workers, device=args.device,
                       progress=not args.quiet, topk=args.topk)
    what = f"dim {info['dim']}" if args.topk is None else f"top-{args.topk} logits"
    print(f"{args.out}: {info['views']} training views + {info['test_images']} test images for {len(specs)} "
          f"run(s), {what}, {info['bytes_per_view']} bytes per view, {info['bytes'] / 2**20:.1f} MiB")
    if info["topk_fidelity"]:
        f = info["topk_fidelity"]
        print(f"top-{args.topk} against the full teacher, mean (max) over the training views: mass outside the "
              f"top {args.topk} {f['mean_tail_mass']:.4f} ({f['max_tail_mass']:.4f}); KD targets at T = 2: "
              f"KL {f['mean_kl_T2']:.4g} nats ({f['max_kl_T2']:.4g}), total variation {f['mean_tv_T2']:.4f} "
              f"({f['max_tv_T2']:.4f}); at T = 1: KL {f['mean_kl_T1']:.4g}, total variation {f['mean_tv_T1']:.4f}")
    return 0


def add_cli(tsub) -> None:
    """``dho teacher cache`` (added under ``dho teacher`` by :mod:`dho.models.cli`)."""
    c = tsub.add_parser("cache", help="teacher image features (or top-k logits) on every training view of a "
                                      "group of runs")
    c.add_argument("--teacher", required=True, help="teacher file (its image tower is what is cached)")
    c.add_argument("--spec", action="extend", nargs="+", required=True, metavar="FILE",
                   help="run spec file(s), each one spec or a list of specs; they must share dataset, "
                        "data_root, seed and crop_scale_min")
    c.add_argument("--image-size", type=int, default=None, help="crop resolution fed to the teacher "
                   "(default: the specs' image_size)")
    c.add_argument("--dtype", default="float16", choices=("float16", "float32"),
                   help="stored dtype of the features (float16)")
    c.add_argument("--topk", type=int, default=None, metavar="K",
                   help="store the zero-shot head's K largest logits per view (fp16 log-probabilities, class "
                        "indices, logsumexp, remaining mass: 4K+8 bytes) instead of the features; the specs "
                        "must have key teacher_cache_topk = K (default: features, exact)")
    c.add_argument("--batch-size", type=int, default=256, help="teacher batch size (256)")
    c.add_argument("--num-workers", type=int, default=0, help="data loader workers (0)")
    c.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.add_argument("--out", required=True, help="cache file to write")
    c.set_defaults(func=_cmd_cache)
