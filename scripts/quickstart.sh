#!/usr/bin/env bash
# Quickstart on a fresh machine, offline (nothing is downloaded):
# toy dataset + RANDOM-WEIGHT CLIP -> MaPLe base-to-novel (train on base classes, test on new), 2 seeds -> table.
# usage: bash scripts/quickstart.sh            (QS_DIR=output/quickstart, PYTHON=python, QS_EPOCHS=5)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
QS_DIR="${QS_DIR:-output/quickstart}"
mkdir -p "$QS_DIR"
QS_DIR="$(cd "$QS_DIR" && pwd)"
PY="${PYTHON:-python}"

banner() {
    echo "############################################################################"
    echo "#  QUICKSTART: the CLIP weights are RANDOM and the images are SYNTHETIC.     #"
    echo "#  The accuracies below only show that the pipeline runs; they mean nothing. #"
    echo "############################################################################"
}
banner
$PY tools/make_toy_dataset.py "$QS_DIR/data"
$PY tools/make_toy_clip.py "$QS_DIR/random_clip.pt" --seed 0

export DATA="$QS_DIR/data" OUTPUT_ROOT="$QS_DIR" CFG=vit_b16_c2_ep5_batch4_2ctx
export EXTRA_OPTS="MODEL.BACKBONE.PATH $QS_DIR/random_clip.pt INPUT.SIZE (32,32) OPTIM.MAX_EPOCH ${QS_EPOCHS:-5} \
DATALOADER.TRAIN_X.BATCH_SIZE 8 DATALOADER.TEST.BATCH_SIZE 64 DATALOADER.NUM_WORKERS 0 TRAINER.MAPLE.PREC fp32 \
TRAIN.PRINT_FREQ 1000"
for seed in 1 2; do
    bash scripts/maple/base2new_train.sh caltech101 "$seed"
    bash scripts/maple/base2new_test.sh caltech101 "$seed"
done

tail="caltech101/shots_16/MaPLe/$CFG"
$PY - "$QS_DIR/base2new/train_base/$tail" "$QS_DIR/base2new/test_new/$tail" <<'PYEOF'
import sys
from tools.parse_test_res import parse_dir
base, new = parse_dir(sys.argv[1]), parse_dir(sys.argv[2], test_log=True)
b, n = base.mean["accuracy"], new.mean["accuracy"]
hm = 2 * b * n / (b + n) if b + n > 0 else 0.0
print(f"\n{'dataset':<12}{'base':>16}{'new':>16}{'HM':>8}   (MaPLe, {len(base.runs)} seeds, mean +- std)")
print(f"{'toy':<12}{b:>9.2f} +- {base.spread['accuracy']:<4.2f}{n:>9.2f} +- {new.spread['accuracy']:<4.2f}{hm:>8.2f}")
PYEOF
banner
echo "Outputs: $QS_DIR/base2new (logs, config.yaml, results.json, checkpoints)"
