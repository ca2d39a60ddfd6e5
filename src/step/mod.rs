//! What one step of a run works from and what it returns: shared by the run
//! (`crate::run`), which plans and sequences the steps, and the strategies
//! (`crate::strategy`), which carry them out, so that neither reaches up into the other.
//!
//! - `context`: `Prepared`, everything validated before the run touched anything;
//! - `result`: `StepResult`, what one step did;
//! - `settings`: the session settings a step's transaction runs with;
//! - `temp_tables`: the run's temporary tables (routing, merge), dropped by name.

pub(crate) mod context;
pub(crate) mod result;
pub(crate) mod settings;
pub(crate) mod temp_tables;

pub use context::{CheckedInterval, Prepared};
pub use result::{ms, StepResult};
