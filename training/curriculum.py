"""MaskingSchedule: step -> masking rates, block sizes and SFT conditioning for each stage.

Pre-training has one phase (S1/S2/S3 at 1 %); mid-training splits the run into equal phases that raise the
rates and grow the block sizes (CoDA Table 3, one phase per "epoch"); SFT ramps prompt conditioning from none
to full over the first `cond_ramp_fraction` of steps. The schedule is a pure function of the step, so a
resumed run needs no scheduler state.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coda_training.config import MAX_BLOCK_SIZES, MaskingConfig, PhaseConfig
from coda_training.masking import MaskingRates


@dataclass(frozen=True)
class MaskingSchedule:
    masking: MaskingConfig
    num_steps: int

    def phase_index(self, step: int) -> int:
        """Equal slices of the run; the last phase absorbs any remainder."""
        num_phases = len(self.masking.phases)
        return min(step * num_phases // self.num_steps, num_phases - 1)

    def phase(self, step: int) -> PhaseConfig:
        return self.masking.phases[self.phase_index(step)]

    def cond_ratio(self, step: int) -> float:
        """Fraction of condition tokens kept clean: r = step / (fraction * num_steps), clipped to [0, 1]."""
        ramp_steps = self.masking.cond_ramp_fraction * self.num_steps
        if ramp_steps <= 0:
            return 1.0
        return float(min(1.0, step / ramp_steps))

    def rates(self, step: int) -> MaskingRates:
        """Host-side numpy values; the jitted step receives them as (replicated) arrays."""
        phase = self.phase(step)
        sizes = np.resize(np.asarray(phase.block_sizes, np.int32), MAX_BLOCK_SIZES)
        return MaskingRates(
            prefix_prob=np.float32(phase.prefix_prob),
            truncate_prob=np.float32(phase.truncate_prob),
            block_prob=np.float32(phase.block_prob),
            block_sizes=sizes,
            num_block_sizes=np.int32(len(phase.block_sizes)),
            cond_ratio=np.float32(self.cond_ratio(step)),
        )
