#!/usr/bin/env bash
# The budget tables of experiments/results/budget (#23): each `nderegs compare` runs one
# budgeted run per method and seed (resumable). NFE targets are 0.5x and 0.7x of the
# committed vanilla test NFE (digits 86.0, CNF moons 74.6).
#
#   bash experiments/budget.sh [digits_nfe|cnf_nfe|digits_loss|digits_loss_high|cnf_loss|cnf_loss_high|
#                               cnf_sweep|latent_sweep|latent_loss_high|spiral_sweep|spiral_loss ...]
#   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${SEEDS:-3}"
out=experiments/results/budget
tables=("${@:-digits_nfe cnf_nfe digits_loss digits_loss_high cnf_loss cnf_loss_high cnf_sweep latent_sweep latent_loss_high spiral_sweep spiral_loss}")
fair="error,error+stiffness,local-error,stiffness,rnode,taynode"
sde="error,error+stiffness,local-error,stiffness"  # RNODE and TayNODE are ODE-only
# "Start high": every budget starts at 30x its key's default constant (error 3, the
# others 0.3), the field takes shape in the warm-up (half the epochs), then the loss decides.
high=(regularization.error.initial=3 regularization.stiffness.initial=0.3 regularization.taynode.initial=0.3
      regularization.kinetic.initial=0.3 regularization.jacobian.initial=0.3)
for table in ${tables[@]}; do
  case "$table" in
    digits_nfe)
      for target in 43 60; do
        nderegs compare experiments/configs/digits.yaml "regularization.error={kind: nfe_budget, target: $target}" \
          --seeds "$seeds" --workers 2 --output-dir "$out/digits_nfe_$target" --methods error
        nderegs compare experiments/configs/digits.yaml "regularization.error={kind: nfe_budget, target: $target, initial: 3}" \
          --seeds "$seeds" --workers 2 --output-dir "$out/digits_nfe_${target}_initial3" --methods error
      done ;;
    cnf_nfe)
      for target in 37 52; do
        nderegs compare experiments/configs/cnf_2d.yaml "regularization.error={kind: nfe_budget, target: $target}" \
          --seeds "$seeds" --workers 2 --output-dir "$out/cnf_moons_nfe_$target" --methods error
      done ;;
    digits_loss)
      nderegs compare experiments/configs/budget_digits.yaml --seeds "$seeds" --workers 2 \
        --output-dir "$out/digits_loss" --methods "$fair" ;;
    digits_loss_high)
      nderegs compare experiments/configs/budget_digits.yaml "${high[@]}" --seeds "$seeds" --workers 2 \
        --output-dir "$out/digits_loss_high" --methods "$fair" ;;
    cnf_loss)
      nderegs compare experiments/configs/budget_cnf_moons.yaml --seeds "$seeds" --workers 2 \
        --output-dir "$out/cnf_moons_loss" --methods "$fair" ;;
    cnf_loss_high)
      nderegs compare experiments/configs/budget_cnf_moons.yaml "${high[@]}" --seeds "$seeds" --workers 2 \
        --output-dir "$out/cnf_moons_loss_high" --methods "$fair" ;;
    cnf_sweep)  # the CNF's coefficients by search, to judge the budgets against
      nderegs sweep experiments/configs/cnf_2d.yaml --methods "vanilla,$fair" --seeds "$seeds" --workers 2 \
        --grid error:regularization.error.start=0.01,0.03,0.1,0.3 \
        --grid error+stiffness:regularization.error.start=0.01,0.03,0.1,0.3 \
        --grid local-error:regularization.local_error.start=0.01,0.03,0.1,0.3 \
        --grid stiffness:regularization.stiffness.start=0.003,0.01,0.03,0.1 \
        --grid rnode:regularization.kinetic.start=0.003,0.01,0.03,0.1 \
        --grid taynode:regularization.taynode.start=0.003,0.01,0.03,0.1 --output-dir "$out/cnf_moons_sweep" ;;
    latent_sweep)
      nderegs sweep experiments/configs/latent_ode.yaml --methods "vanilla,$fair" --seeds "$seeds" --workers 2 \
        --grid error:regularization.error.start=100,300,1000,3000 \
        --grid error+stiffness:regularization.error.start=100,300,1000,3000 \
        --grid local-error:regularization.local_error.start=100,300,1000,3000 \
        --grid stiffness:regularization.stiffness.start=0.1,1,10,100 \
        --grid rnode:regularization.kinetic.start=0.01,0.1,1,10 \
        --grid taynode:regularization.taynode.start=0.01,0.1,1,10 --output-dir "$out/latent_ode_sweep" ;;
    latent_loss_high)  # the training loss within 1 % of the committed vanilla runs', from a high start
      # (3x the config's hand-set values: error 1000, stiffness 0.1, the others 0.01)
      budget="tolerance: 0.01, reference: 'experiments/results/latent_ode/vanilla/seed{seed}'"
      nderegs compare experiments/configs/latent_ode.yaml \
        "regularization.error={kind: loss_budget, initial: 3000, $budget}" \
        "regularization.stiffness={kind: loss_budget, initial: 0.3, $budget}" \
        "regularization.taynode={kind: loss_budget, initial: 0.03, $budget}" \
        "regularization.kinetic={kind: loss_budget, initial: 0.03, $budget}" \
        "regularization.jacobian={kind: loss_budget, initial: 0.03, $budget}" \
        --seeds "$seeds" --workers 2 --output-dir "$out/latent_ode_loss_high" --methods "$fair" ;;
    spiral_sweep)
      nderegs sweep experiments/configs/spiral_sde.yaml --methods "vanilla,$sde" --seeds "$seeds" --workers 2 \
        --grid error:regularization.error.start=0.01,0.03,0.1,0.3 \
        --grid error+stiffness:regularization.error.start=0.01,0.03,0.1,0.3 \
        --grid local-error:regularization.local_error.start=0.01,0.03,0.1,0.3 \
        --grid stiffness:regularization.stiffness.start=0.003,0.01,0.03,0.1 --output-dir "$out/spiral_sde_sweep" ;;
    spiral_loss)  # the training moment error within 1 % of the committed vanilla runs', from the usual scale
      budget="tolerance: 0.01, reference: 'experiments/results/spiral_sde/vanilla/seed{seed}'"
      nderegs compare experiments/configs/spiral_sde.yaml \
        "regularization.error={kind: loss_budget, $budget}" "regularization.stiffness={kind: loss_budget, $budget}" \
        --seeds "$seeds" --workers 2 --output-dir "$out/spiral_sde_loss" --methods "$sde" ;;
    *) echo "unknown table $table" >&2; exit 2 ;;
  esac
done
