"""`parallel`: how many devices (and hosts) a run's training step is split over."""

from typing import Literal

from pydantic import field_validator

from ..parallel import DataParallel, initialize_distributed, resolve_devices
from .base import Bool, ConfigError, Int, invalid, Section


class ParallelConfig(Section):
    """Data parallelism over a 1-D device mesh (see `nderegs.parallel`): each device
    solves its equal shard of `optim.batch_size` with its own adaptive steps; losses and
    gradients are averaged across devices. `devices: 1` (the default) is the
    single-device run."""

    #: 1 | N | all. In a multi-host run: all (every device of every process).
    devices: Int | Literal["all"] = 1
    #: Call jax.distributed.initialize() before any JAX work (one process per host);
    #: also done when JAX_COORDINATOR_ADDRESS is set.
    distributed: Bool = False

    @field_validator("devices", mode="before")
    @classmethod
    def _check_devices(cls, devices: object) -> object:
        if devices == "all" or (type(devices) is int and devices >= 1):
            return devices
        raise ValueError("accepted: a positive number of devices, or all")

    def build(self) -> DataParallel:
        """The run's `DataParallel`; initialises jax.distributed first if asked to."""
        try:
            initialize_distributed(self.distributed)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        try:
            devices = resolve_devices(self.devices)
        except ValueError as e:
            raise ConfigError(invalid("parallel.devices", self.devices, str(e))) from None
        return DataParallel(devices)
