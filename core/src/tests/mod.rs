//! Property tests across modules: the tables' invariants and exact merging of partitions.
//! Module-level unit tests live next to their code.

mod invariants;
