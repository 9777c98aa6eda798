"""`processors.memory_limiter` configuration, with the Collector's names, defaults and rules.

As in the Collector, the default configuration is not valid: `check_interval` and one of
`limit_mib` / `limit_percentage` must be set, because no default fits every deployment.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from gateway.config.types import ComponentConfig, Duration

_UINT32 = 2**32 - 1


class MemoryLimiterConfig(ComponentConfig):
    check_interval: Duration = Field(
        0.0,
        description="Time between measurements of the process memory (RSS); 1s is the "
                    "recommended value. Spiky traffic needs a shorter interval or a larger "
                    "spike limit.")
    limit_mib: int = Field(
        0, ge=0, le=_UINT32,
        description="Hard limit: the most memory, in MiB, the process may use. Above it data "
                    "is refused and memory is released to the operating system at every check. "
                    "Takes precedence over limit_percentage.")
    spike_limit_mib: int = Field(
        0, ge=0, le=_UINT32,
        description="Largest increase of memory expected between two checks, in MiB; the soft "
                    "limit, above which data is refused, is limit_mib - spike_limit_mib "
                    "(0: 20% of limit_mib).")
    limit_percentage: int = Field(
        0, ge=0, le=100,
        description="Hard limit as a percentage of the total memory: the cgroup memory limit "
                    "of the container when there is one, else the physical memory. Used when "
                    "limit_mib is 0.")
    spike_limit_percentage: int = Field(
        0, ge=0, le=100,
        description="Spike limit as a percentage of the total memory, used with "
                    "limit_percentage (0: 20% of the hard limit).")
    min_gc_interval_when_soft_limited: Duration = Field(
        10.0, ge=0,
        description="Shortest time between two forced memory releases (garbage collection "
                    "and returning free heap to the OS) while above the soft limit; 0: every "
                    "check.")
    min_gc_interval_when_hard_limited: Duration = Field(
        0.0, ge=0,
        description="Shortest time between two forced memory releases while above the hard "
                    "limit; 0: every check.")

    @model_validator(mode="after")
    def _check(self) -> MemoryLimiterConfig:
        # checked together, so a user learns every problem at once
        problems = []
        if self.check_interval <= 0:
            problems.append("check_interval must be greater than zero (1s is recommended)")
        if self.min_gc_interval_when_soft_limited < self.min_gc_interval_when_hard_limited:
            problems.append("min_gc_interval_when_soft_limited should be larger than "
                            "min_gc_interval_when_hard_limited")
        if self.limit_mib == 0 and self.limit_percentage == 0:
            problems.append("limit_mib or limit_percentage must be greater than zero")
        if self.limit_mib and self.limit_mib <= self.spike_limit_mib:
            problems.append(f"spike_limit_mib ({self.spike_limit_mib}) must be smaller than "
                            f"limit_mib ({self.limit_mib})")
        if self.limit_percentage and self.limit_percentage <= self.spike_limit_percentage:
            problems.append(f"spike_limit_percentage ({self.spike_limit_percentage}) must be "
                            f"smaller than limit_percentage ({self.limit_percentage})")
        if problems:
            raise ValueError("; ".join(problems))
        return self
