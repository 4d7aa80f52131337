//! File formats. Each store turns bytes into [`crate::sops::tree::Node`] documents and back,
//! writing exactly what sops 3.11 writes.
pub mod binary;
pub mod dotenv;
pub mod json;
pub mod yaml;
