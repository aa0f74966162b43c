//! Learning-rate schedules with linear warm-up, as the Python trainers define them.

use crate::config::ScheduleKind;

/// The learning rate of every optimizer step of a run.
///
/// Matches `transformers`' `get_{cosine,linear,constant}_schedule_with_warmup` with
/// `warmup_steps = ceil(warmup_ratio * total_steps)`: the multiplier at step `s` (0-based) is
/// `s / warmup` during warm-up, then `0.5 (1 + cos(pi p))` (cosine), `1 - p` (linear) or 1
/// (constant), where `p = (s - warmup) / (total - warmup)`. Like those, step 0 of a run with
/// warm-up has learning rate 0.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    /// Peak learning rate.
    pub peak: f64,
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Warm-up steps.
    pub warmup_steps: usize,
    /// Total optimizer steps of the run.
    pub total_steps: usize,
}

impl LrSchedule {
    /// A schedule of `total_steps` steps whose first `ceil(warmup_ratio * total_steps)` warm up.
    pub fn new(peak: f64, kind: ScheduleKind, warmup_ratio: f64, total_steps: usize) -> Self {
        let warmup_steps = (warmup_ratio * total_steps as f64).ceil() as usize;
        Self { peak, kind, warmup_steps, total_steps }
    }

    /// The learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        self.peak * self.multiplier(step)
    }

    fn multiplier(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return step as f64 / self.warmup_steps.max(1) as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = (step - self.warmup_steps) as f64 / decay_steps;
        match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => (1.0 - progress).max(0.0),
            ScheduleKind::Cosine => (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_rises_linearly_from_zero() {
        let s = LrSchedule::new(1e-3, ScheduleKind::Cosine, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 0.5e-3).abs() < 1e-15);
        assert!((s.lr(10) - 1e-3).abs() < 1e-15, "peak right after warm-up");
    }

    #[test]
    fn cosine_reaches_half_at_midpoint_and_zero_at_end() {
        let s = LrSchedule::new(2.0, ScheduleKind::Cosine, 0.0, 100);
        assert_eq!(s.lr(0), 2.0);
        assert!((s.lr(50) - 1.0).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
        assert!((1..100).all(|i| s.lr(i) < s.lr(i - 1)), "strictly decreasing");
    }

    #[test]
    fn linear_and_constant_shapes() {
        let lin = LrSchedule::new(1.0, ScheduleKind::Linear, 0.2, 10);
        assert_eq!(lin.warmup_steps, 2);
        assert!((lin.lr(6) - 0.5).abs() < 1e-12);
        let c = LrSchedule::new(1.0, ScheduleKind::Constant, 0.25, 8);
        assert_eq!((c.lr(1), c.lr(2), c.lr(7)), (0.5, 1.0, 1.0));
    }

    #[test]
    fn ceil_of_warmup_ratio_as_in_transformers() {
        assert_eq!(LrSchedule::new(1.0, ScheduleKind::Cosine, 0.1, 15).warmup_steps, 2);
        assert_eq!(LrSchedule::new(1.0, ScheduleKind::Cosine, 0.0, 15).warmup_steps, 0);
    }
}
