//! Property tests across modules: fuzzing the readers and the config parser (`fuzz`), and the
//! tables' invariants and exact merging of partitions (`invariants`). Module-level unit tests
//! live next to their code.

mod fuzz;
mod invariants;
