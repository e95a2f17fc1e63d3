//! Repositories: one module per table, free functions over `&mut PgConnection` so that they
//! work alike on a pooled connection and inside a transaction (`&mut *tx`).

pub mod aliases;
pub mod entities;
pub mod records;
