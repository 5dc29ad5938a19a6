"""Students (one or two linear heads on a shared feature) and frozen CLIP teachers.

open_clip and torchvision are imported on first use; the project's open_clip model
configs (``dho/models/configs/*.json``) are registered then (:func:`dho.models.clip.open_clip`).
"""

from .students import STUDENTS, Student, StudentOutput, build_student
from . import coop, vpt  # noqa: E402,F401  (register the prompt-tuning students)
from .teachers import (TEACHERS, TipAdapterTeacher, ZeroShotTeacher, build_zeroshot_teacher, encoder_identity,
                       head_identity, load_teacher, load_teacher_head, read_teacher_file, save_teacher)
from .tip_adapter import fit_tip_adapter_f

__all__ = ["STUDENTS", "Student", "StudentOutput", "build_student", "TEACHERS", "ZeroShotTeacher",
           "TipAdapterTeacher", "build_zeroshot_teacher", "fit_tip_adapter_f", "load_teacher", "save_teacher",
           "encoder_identity", "head_identity", "load_teacher_head", "read_teacher_file"]
