//! Property tests across modules: fuzzing the readers and the config parser. The core's
//! invariants are tested in `customer-value-core`; module-level unit tests live next to their
//! code.

mod fuzz;
