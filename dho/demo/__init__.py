"""The offline demo: small, honest stand-ins for the real benchmark, run through exactly
the same code paths.

* :mod:`dho.demo.render` -- procedural images of textured coloured shapes ("red striped
  circle") on cluttered backgrounds;
* :mod:`dho.demo.data` -- the 12-class "shapes" dataset written in the CoOp layout
  (``dho demo data``), read back by ``dho.data.get_dataset("shapes", root)``;
* :mod:`dho.demo.teacher` -- contrastive pretraining of the tiny CLIP ``dho-tiny-clip`` on
  synthetic captions from a disjoint image stream (``dho demo teacher``), whose weights
  file is then used like any open_clip ``pretrained`` file.
"""
