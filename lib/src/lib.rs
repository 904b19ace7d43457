//! sdme-core: the one model of sdme's files, shared by the generator, the
//! helpers and the CLI. Nothing else parses `.container` files.

pub mod name;
pub mod paths;
pub mod timespan;
