#!/usr/bin/env bash
# Oracle check of our HPSv3 and ImageReward scorers against the official packages (on demand,
# not CI): bash bench/oracle/run.sh [WORK_DIR] [ORACLE_VENV]. Writes bench/results/oracle.json.
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${1:-/tmp/raygrpo_oracle}
VENV=${2:-$PWD/.venv-oracle}
PY=${PYTHON:-python}
[ -x "$VENV/bin/python" ] || { echo "no oracle venv at $VENV: run bash bench/oracle/setup_venv.sh $VENV"; exit 2; }
PYTHONPATH=$PWD $PY bench/oracle/prepare.py --work "$WORK"
(cd "$WORK" && HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" "$OLDPWD/bench/oracle/reference.py" --work "$WORK")
PYTHONPATH=$PWD $PY bench/oracle/compare.py --work "$WORK" --out bench/results/oracle.json
