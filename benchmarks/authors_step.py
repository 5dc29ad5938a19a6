"""A re-implementation of the authors' training step (GitHub erjui/DHO, ``train_others.py``
``train_student``), for benchmark 1 only: same models and batch as ``dho train``'s step.

Per step the authors' code normalises the [0, 1] crops once for the student and once for
CLIP, calls the teacher **separately** on the labeled and on the unlabeled batch
(``encode_image``, L2-normalise, ``100 * f @ W``; Tip-Adapter adds its cache logits), runs
the student **twice** (labeled batch for both heads, unlabeled batch for the KD head), and
takes ``0.5 * CE + 0.5 * (KD_l + KD_u)`` with KL at temperature 2 scaled by T^2, AdamW and
a linear warm-up schedule stepped every step.  Their data pipeline is torchvision's
``RandomResizedCrop(224, scale=(0.5, 1)) + RandomHorizontalFlip + ToTensor`` on PIL images
through a shuffled DataLoader per split (:func:`authors_loader`).

Models come from this harness (:class:`dho.models.students.Student`,
:class:`dho.models.teachers.ZeroShotTeacher`) so that both steps run the same networks;
this module calls their parts (``adapter.mean/std``, ``backbone``, heads, ``visual``) the
way the authors' script calls its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

TEMPERATURE = 2.0


def _normalize(x01: torch.Tensor, adapter) -> torch.Tensor:
    """The authors' ``transforms.Normalize`` (their crops are already at the model's size;
    a resize is applied only when the model's size differs)."""
    x = x01
    if x.shape[-1] != adapter.image_size:
        x = F.interpolate(x, size=(adapter.image_size, adapter.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
    return (x - adapter.mean) / adapter.std


def _student(student, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``StudentModel.forward``: (ce logits, kd logits) of one batch."""
    z = student.backbone(x)
    return student.ce_head(z), student.kd_head(z)


@torch.no_grad()
def _teacher(teacher, x: torch.Tensor) -> torch.Tensor:
    """``encode_image`` -> L2 normalise -> ``100 * f @ clip_weights`` (+ Tip-Adapter cache)."""
    with torch.autocast("cuda", dtype=torch.float16, enabled=x.is_cuda):
        f = teacher.visual(x)
    f = f.float()
    f = f / f.norm(dim=-1, keepdim=True)
    return teacher.logits_from_features(f)


def _kd(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    return F.kl_div(F.log_softmax(student_logits / TEMPERATURE, dim=1),
                    F.softmax(teacher_logits / TEMPERATURE, dim=1),
                    reduction="batchmean") * (TEMPERATURE * TEMPERATURE)


def authors_step(student, teacher, optimizer, scheduler, x_l: torch.Tensor, y: torch.Tensor,
                 x_u: torch.Tensor) -> float:
    """One step of ``train_student`` on [0, 1] crops already on the device; the loss."""
    xs_l, xs_u = _normalize(x_l, student.adapter), _normalize(x_u, student.adapter)
    xt_l, xt_u = _normalize(x_l, teacher.adapter), _normalize(x_u, teacher.adapter)
    t_l = _teacher(teacher, xt_l)
    t_u = _teacher(teacher, xt_u)
    ce_l, kd_l = _student(student, xs_l)
    _, kd_u = _student(student, xs_u)
    loss = 0.5 * F.cross_entropy(ce_l, y) + 0.5 * (_kd(kd_l, t_l) + _kd(kd_u, t_u))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    scheduler.step()
    return loss.item()


def authors_loader(paths_labels, image_size: int, batch_size: int, num_workers: int, seed: int):
    """Their training loader: shuffled, PIL decode + RandomResizedCrop(scale 0.5-1) + flip +
    ToTensor, no normalisation (done on the device in the step)."""
    from PIL import Image
    from torchvision import transforms as T

    tf = T.Compose([T.RandomResizedCrop(image_size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(p=0.5),
                    T.ToTensor()])

    class _Set(torch.utils.data.Dataset):
        def __len__(self):
            return len(paths_labels)

        def __getitem__(self, i):
            path, label = paths_labels[i]
            with Image.open(path) as im:
                return tf(im.convert("RGB")), label

    g = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(_Set(), batch_size=batch_size, shuffle=True, generator=g,
                                       num_workers=num_workers, drop_last=False)
