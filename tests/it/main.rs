//! Integration tests: run the real binary on temp dirs and read what it wrote.

mod api;
mod backfill;
mod bad_input;
mod delta;
mod exports;
mod faults;
mod fixtures;
mod formats;
mod input_order;
mod kills;
mod object_storage;
mod predictions;
mod reader;
mod report;
mod servers;
mod spill;
mod tools;
mod util;
