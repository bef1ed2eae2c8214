"""Prompt-learning trainers; importing this package registers every trainer in ``engine.TRAINER_REGISTRY``."""
from . import coop, zsclip  # noqa: F401  (registration by import)
from . import cocoop  # noqa: F401
from . import ivlp, vpt  # noqa: F401
from . import maple  # noqa: F401
from . import mudpt  # noqa: F401
from . import mmrl  # noqa: F401
from . import promptsrc  # noqa: F401
from . import dept  # noqa: F401
from . import kgcoop  # noqa: F401
from . import prograd, tcp  # noqa: F401
from . import linear_probe  # noqa: F401
from . import tip_adapter  # noqa: F401
from . import clip_adapter  # noqa: F401
from . import actionclip  # noqa: F401
