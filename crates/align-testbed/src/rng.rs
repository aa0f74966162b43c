//! The testbed's seeded random numbers: [`align_train::seeded::SeededRng`] (SplitMix64), so
//! that every byte the testbed writes depends on the seed alone and never on the version of a
//! third-party RNG crate.

pub use align_train::seeded::SeededRng;
