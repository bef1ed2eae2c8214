"""The one commented defaults file.

Every key the official CoOp/CoCoOp/MaPLe configs, scripts and log dumps use exists here with Dassl's default,
so the official YAML files and command lines merge unchanged; yacs rejects unknown keys. Each trainer adds its
own node (``TRAINER.COOP``, ``TRAINER.MAPLE``, ...) through its ``add_config(cfg)`` classmethod.
Keys that are ours (not in the official engine) are marked "(ours)".
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

_C = CN()
_C.VERSION = 1
_C.OUTPUT_DIR = "./output"  # logs, config.yaml, checkpoints, results.json
_C.RESUME = ""  # a run folder to resume from ("" = none; re-running into OUTPUT_DIR also resumes)
_C.SEED = -1  # -1: no seeding. 0 is a valid seed here (the official train.py ignores --seed 0)
_C.USE_CUDA = True  # use a GPU when one is present
_C.VERBOSE = True  # print the resolved config at start

# ---------------------------------------------------------------- input pipeline
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)  # (H, W) after the transforms
_C.INPUT.INTERPOLATION = "bilinear"  # resize mode: bilinear | bicubic | nearest
_C.INPUT.TRANSFORMS = ()  # train-time transform names, applied in order (see engine/transforms.py)
_C.INPUT.NO_TRANSFORM = False  # if True, images are only converted to tensors
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # ImageNet statistics; CLIP configs override them
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.CROP_PADDING = 4  # random_crop padding
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # random_resized_crop scale range
_C.INPUT.CUTOUT_N = 1
_C.INPUT.CUTOUT_LEN = 16
_C.INPUT.GN_MEAN = 0.0  # gaussian_noise
_C.INPUT.GN_STD = 0.15
_C.INPUT.RANDAUGMENT_N = 2
_C.INPUT.RANDAUGMENT_M = 10
_C.INPUT.COLORJITTER_B = 0.4
_C.INPUT.COLORJITTER_C = 0.4
_C.INPUT.COLORJITTER_S = 0.4
_C.INPUT.COLORJITTER_H = 0.1
_C.INPUT.RGS_P = 0.2  # random_gray_scale probability
_C.INPUT.GB_P = 0.5  # gaussian_blur probability
_C.INPUT.GB_K = 21  # gaussian_blur kernel size

# ---------------------------------------------------------------- dataset
_C.DATASET = CN()
_C.DATASET.ROOT = ""  # folder holding every dataset (the scripts' DATA)
_C.DATASET.NAME = ""  # registered reader name, e.g. Caltech101
_C.DATASET.SOURCE_DOMAINS = ()
_C.DATASET.TARGET_DOMAINS = ()
_C.DATASET.NUM_LABELED = -1
_C.DATASET.NUM_SHOTS = -1  # K images per class for train (val: min(K, 4)); -1 = all
_C.DATASET.VAL_PERCENT = 0.1
_C.DATASET.STL10_FOLD = -1
_C.DATASET.CIFAR_C_TYPE = ""
_C.DATASET.CIFAR_C_LEVEL = 1
_C.DATASET.ALL_AS_UNLABELED = False
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new (base-to-novel protocol)
_C.DATASET.SPLIT_CACHE_DIR = ""  # (ours) where few-shot split JSONs go when the data root is read-only

# ---------------------------------------------------------------- data loaders
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.K_TRANSFORMS = 1
_C.DATALOADER.RETURN_IMG0 = False
_C.DATALOADER.PIN_MEMORY = True  # (ours) pinned host memory when a GPU is used
_C.DATALOADER.PERSISTENT_WORKERS = True  # (ours) keep workers alive between epochs (when NUM_WORKERS > 0)
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_X.N_DOMAIN = 0
_C.DATALOADER.TRAIN_X.N_INS = 16
_C.DATALOADER.TRAIN_U = CN()
_C.DATALOADER.TRAIN_U.SAME_AS_X = True
_C.DATALOADER.TRAIN_U.SAMPLER = "RandomSampler"
_C.DATALOADER.TRAIN_U.BATCH_SIZE = 32
_C.DATALOADER.TRAIN_U.N_DOMAIN = 0
_C.DATALOADER.TRAIN_U.N_INS = 16
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.SAMPLER = "SequentialSampler"
_C.DATALOADER.TEST.BATCH_SIZE = 32

# ---------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # a checkpoint to initialise the whole model from
_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = ""  # CLIP model name (RN50, ViT-B/16, ...)
_C.MODEL.BACKBONE.PRETRAINED = True
_C.MODEL.BACKBONE.PATH = ""  # (ours) local CLIP checkpoint loaded instead of downloading NAME
# (ours) run the text tower only up to the last end-of-text token instead of all 77 positions: attention is
# causal and features are read at EOT, so results are equal (fp32 rounding); False = the official path
_C.MODEL.TRIM_TEXT = True
_C.MODEL.HEAD = CN()
_C.MODEL.HEAD.NAME = ""
_C.MODEL.HEAD.HIDDEN_LAYERS = ()
_C.MODEL.HEAD.ACTIVATION = "relu"
_C.MODEL.HEAD.BN = True
_C.MODEL.HEAD.DROPOUT = 0.0

# ---------------------------------------------------------------- optimisation
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"  # sgd | adam | adamw | rmsprop
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9
_C.OPTIM.SGD_DAMPNING = 0
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.RMSPROP_ALPHA = 0.99
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.STAGED_LR = False  # NEW_LAYERS get LR, the rest LR * BASE_LR_MULT
_C.OPTIM.NEW_LAYERS = ()
_C.OPTIM.BASE_LR_MULT = 0.1
_C.OPTIM.LR_SCHEDULER = "single_step"  # single_step | multi_step | cosine
_C.OPTIM.STEPSIZE = (-1,)  # -1 or 0 = MAX_EPOCH for single_step
_C.OPTIM.GAMMA = 0.1
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # epochs of warm-up (<= 0: none)
_C.OPTIM.WARMUP_TYPE = "linear"  # constant | linear
_C.OPTIM.WARMUP_CONS_LR = 1e-5  # constant warm-up LR
_C.OPTIM.WARMUP_MIN_LR = 1e-5  # linear warm-up start LR
_C.OPTIM.WARMUP_RECOUNT = True  # the main schedule starts from epoch 0 after warm-up

# ---------------------------------------------------------------- training loop
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # save every N epochs (0: last epoch only)
_C.TRAIN.PRINT_FREQ = 10  # log every N batches
_C.TRAIN.COUNT_ITER = "train_x"

# ---------------------------------------------------------------- evaluation
_C.TEST = CN()
_C.TEST.EVALUATOR = "Classification"
_C.TEST.PER_CLASS_RESULT = False
_C.TEST.COMPUTE_CMAT = False
_C.TEST.NO_TEST = False  # skip the test at the end of training
_C.TEST.SPLIT = "test"  # test | val
_C.TEST.FINAL_MODEL = "last_step"  # last_step | best_val
_C.TEST.SAVE_PREDICTIONS = False  # (ours) write <OUTPUT_DIR>/predictions.json
# (ours) compute the class text features once per test call when they do not depend on the image
# (every method but CoCoOp); False = recompute them for every batch, as the official code
_C.TEST.CACHE_TEXT = True

# ---------------------------------------------------------------- trainer
_C.TRAINER = CN()
_C.TRAINER.NAME = ""


def get_cfg_default() -> CN:
    """A fresh copy of the defaults (no trainer nodes yet; ``setup_cfg`` adds them)."""
    return _C.clone()
