"""Every config key the engine knows, with its default and meaning, in one place.

The names and defaults are those of the official CoOp/CoCoOp/MaPLe configs (Dassl's), so their YAML files and
command lines merge unchanged; yacs rejects a key that is not here, so a typo fails instead of being ignored.
Only keys that a shipped config sets or some code path reads are kept. Each trainer adds its own node
(``TRAINER.COOP``, ``TRAINER.MAPLE``, ...) through its ``add_config(cfg)`` classmethod. "(ours)" marks keys the
official engine does not have.
"""
from __future__ import annotations

from yacs.config import CfgNode as CN

_C = CN()
_C.OUTPUT_DIR = "./output"  # the run folder: log.txt, config.yaml, results.json, checkpoints
_C.RESUME = ""  # continue the run saved in this folder ("" = none; a rerun into OUTPUT_DIR continues it too)
_C.SEED = -1  # -1 leaves the generators unseeded; 0 is a valid seed here (the official train.py drops it)
_C.USE_CUDA = True  # run on the GPU when there is one
_C.VERBOSE = True  # log the dataset summary

# ---------------------------------------------------------------- images
_C.INPUT = CN()
_C.INPUT.SIZE = (224, 224)  # (H, W) of the images the model sees
_C.INPUT.INTERPOLATION = "bilinear"  # resampling of resizes: bilinear | bicubic | nearest
_C.INPUT.TRANSFORMS = ()  # training augmentations (engine/transforms.py lists them and their fixed order)
_C.INPUT.PIXEL_MEAN = [0.485, 0.456, 0.406]  # normalisation; every CLIP config sets CLIP's own statistics
_C.INPUT.PIXEL_STD = [0.229, 0.224, 0.225]
_C.INPUT.RRCROP_SCALE = (0.08, 1.0)  # area range of random_resized_crop

# ---------------------------------------------------------------- dataset and protocol
_C.DATASET = CN()
_C.DATASET.ROOT = ""  # the folder that holds every dataset (the scripts' DATA)
_C.DATASET.NAME = ""  # a registered reader, e.g. Caltech101
_C.DATASET.NUM_SHOTS = -1  # K training images per class (validation: min(K, 4)); -1 keeps them all
_C.DATASET.SUBSAMPLE_CLASSES = "all"  # all | base | new: the halves of the base-to-novel protocol
_C.DATASET.SPLIT_CACHE_DIR = ""  # (ours) where few-shot split files go when the dataset folder is read-only

# ---------------------------------------------------------------- loaders
_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 4
_C.DATALOADER.PIN_MEMORY = True  # (ours) page-locked batches when a GPU is used
_C.DATALOADER.PERSISTENT_WORKERS = True  # (ours) keep evaluation loader processes alive (NUM_WORKERS > 0)
# (ours) where trainers that need only frozen image features (linear probe, adapters) keep them between runs
_C.DATALOADER.FEATURE_CACHE_DIR = "~/.cache/prompt_clip/features"
_C.DATALOADER.TRAIN_X = CN()
_C.DATALOADER.TRAIN_X.BATCH_SIZE = 32  # shuffled; the last incomplete batch of an epoch is dropped
_C.DATALOADER.TEST = CN()
_C.DATALOADER.TEST.BATCH_SIZE = 32  # in dataset order

# ---------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.INIT_WEIGHTS = ""  # a checkpoint whose learnable tensors replace the initial ones
_C.MODEL.BACKBONE = CN()
# an OpenAI CLIP name (RN50, ViT-B/16, ...), downloaded into the cache; (ours) also openclip:ARCH/TAG,
# openclip:hf-hub:ORG/REPO or hf:ORG/REPO[@REVISION] (OpenCLIP / Hugging Face checkpoints, see the README)
_C.MODEL.BACKBONE.NAME = ""
# (ours) a local CLIP file or folder used instead of downloading NAME; with an openclip:/hf: NAME, read that way
_C.MODEL.BACKBONE.PATH = ""
# (ours) stop the text tower at the last end-of-text token rather than running all 77 positions: attention is
# causal and features are read at EOT, so the result is the same up to rounding; False = the official path
_C.MODEL.TRIM_TEXT = True
# (ours) before drawing the prompts, advance the random generator as the official code's CLIP construction did
# (its weights are drawn at random, then overwritten by the checkpoint), so a seed gives the official initial
# prompts; costs 1-2 s per start for ViT-B/16. False skips it: valid random prompts, not the official ones.
# OpenCLIP and Hugging Face checkpoints are never replayed (no official run could load them).
_C.MODEL.REPLAY_CLIP_INIT = True

# ---------------------------------------------------------------- optimisation (stepped once per epoch)
_C.OPTIM = CN()
_C.OPTIM.NAME = "adam"  # sgd | adam | adamw
_C.OPTIM.LR = 0.0003
_C.OPTIM.WEIGHT_DECAY = 5e-4
_C.OPTIM.MOMENTUM = 0.9  # sgd
_C.OPTIM.SGD_DAMPNING = 0  # (the official spelling)
_C.OPTIM.SGD_NESTEROV = False
_C.OPTIM.ADAM_BETA1 = 0.9
_C.OPTIM.ADAM_BETA2 = 0.999
_C.OPTIM.ADAM_EPS = 1e-8  # (ours) adam's eps (torch's default); TCP's config sets 1e-3, the edit its README asks for
_C.OPTIM.LR_SCHEDULER = "single_step"  # single_step | cosine
_C.OPTIM.STEPSIZE = (-1,)  # single_step: decay after this many epochs (<= 0: MAX_EPOCH)
_C.OPTIM.GAMMA = 0.1  # single_step decay factor
_C.OPTIM.MAX_EPOCH = 10
_C.OPTIM.WARMUP_EPOCH = -1  # warm-up epochs before the schedule starts (<= 0: none)
_C.OPTIM.WARMUP_TYPE = "linear"  # constant (WARMUP_CONS_LR) | linear (from WARMUP_MIN_LR up to LR)
_C.OPTIM.WARMUP_CONS_LR = 1e-5
_C.OPTIM.WARMUP_MIN_LR = 1e-5

# ---------------------------------------------------------------- training loop
_C.TRAIN = CN()
_C.TRAIN.CHECKPOINT_FREQ = 0  # a checkpoint is saved after every epoch; keep every N-th too (0: only the last)
_C.TRAIN.PRINT_FREQ = 10  # a log line every N batches

# ---------------------------------------------------------------- evaluation
_C.TEST = CN()
_C.TEST.PER_CLASS_RESULT = False  # also log the accuracy of every class
_C.TEST.NO_TEST = False  # do not evaluate when training ends
_C.TEST.SPLIT = "test"  # test | val
_C.TEST.FINAL_MODEL = "last_step"  # last_step | best_val (evaluate on val after each epoch, keep the best)
_C.TEST.SAVE_PREDICTIONS = False  # (ours) also write <OUTPUT_DIR>/predictions.json
# (ours) compute the class text features once per evaluation when they do not depend on the image (every method
# but CoCoOp); False recomputes them for every batch, as the official code does
_C.TEST.CACHE_TEXT = True

# ---------------------------------------------------------------- trainer
_C.TRAINER = CN()
_C.TRAINER.NAME = ""


def get_cfg_default() -> CN:
    """A fresh copy of the defaults (no trainer nodes yet; ``train.setup_cfg`` adds them)."""
    return _C.clone()
