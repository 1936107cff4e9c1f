#!/usr/bin/env bash
# The flow tables (#29) of experiments/results/flows_2d/<density> (2-D toys,
# experiments/configs/cnf_2d.yaml) and experiments/results/flows_digits64 (the 64-D digits,
# experiments/configs/flows_digits64.yaml). Per seed: FFJORD (maximum likelihood) without
# and with the error regularizer, flow matching with the independent and the OT coupling,
# and each flow-matching model fine-tuned from its weights (--init-from) with the error
# regularizer of its sampling solve at each λ of LAMBDAS. Finished runs are kept and
# interrupted ones resumed; then flows_report.py writes the density's table.
#
#   SEEDS=3 LAMBDAS="0 0.1 0.3 1 3" bash experiments/flows.sh [moons pinwheel 8gaussians checkerboard digits64 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${SEEDS:-3}"
lambdas="${LAMBDAS:-0 0.1 0.3 1 3}"  # 0: the control, fine-tuned without the regularizer
run() {  # run DIR OVERRIDES...: train, resume an interrupted run, or keep a finished one
  local dir=$1
  shift
  if [ -f "$dir/summary.json" ]; then
    return
  elif [ -f "$dir/checkpoint.eqx" ]; then
    nderegs train --resume "$dir" > /dev/null
  else
    rm -rf "$dir"
    nderegs train "$config" "$@" --run-dir "$dir" > /dev/null
  fi
}
for density in ${@:-moons}; do
  if [ "$density" = digits64 ]; then
    config=experiments/configs/flows_digits64.yaml
    out=experiments/results/flows_digits64
    data=()
    ffjord_epochs=400  # 2,000 steps of 256 (5 an epoch)
    fm_epochs=1000   # 5,000 steps of 256, no solve per step
    fm_eval=100      # the test NLL every 500 steps: when flow matching reaches FFJORD's
    tune_epochs=80   # 400 steps of fine-tuning
  else
    config=experiments/configs/cnf_2d.yaml
    out=experiments/results/flows_2d/$density
    data=(task.data.density="$density")
    ffjord_epochs=20   # 780 steps of 256 (39 an epoch), the config's
    fm_epochs=500    # 19,500 steps of 256, no solve per step
    fm_eval=500
    tune_epochs=10   # 390 steps of fine-tuning
  fi
  for seed in $(seq 0 $((seeds - 1))); do
    common=("${data[@]}" seed="$seed")
    run "$out/ffjord/seed$seed" "${common[@]}" optim.epochs="$ffjord_epochs"
    run "$out/ffjord+error/seed$seed" "${common[@]}" optim.epochs="$ffjord_epochs" method=error
    for coupling in independent ot; do
      row=fm; [ "$coupling" = ot ] && row=fm-ot
      fm=(task.training=flow_matching task.coupling=$coupling)
      run "$out/$row/seed$seed" "${common[@]}" "${fm[@]}" optim.epochs="$fm_epochs" train.eval_every="$fm_eval"
      for lambda in $lambdas; do
        method=(method=error "regularization.error={kind: constant, start: $lambda}")
        [ "$lambda" = 0 ] && method=(method=vanilla)
        run "$out/$row+error/lambda$lambda/seed$seed" "${common[@]}" "${fm[@]}" "${method[@]}" \
          optim.lr=1e-3 optim.epochs="$tune_epochs" train.eval_every="$tune_epochs" \
          --init-from "$out/$row/seed$seed"
      done
    done
  done
  python experiments/flows_report.py "$out"
done
