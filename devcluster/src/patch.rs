//! Non-apply PATCH mechanics (JSON Patch, JSON Merge Patch, strategic merge patch): the
//! object mechanics live in the shared `objmerge` crate; this module adds the server's
//! request-size bound.

pub use objmerge::patch::*;

use serde_json::Value;

/// JSON Patch with the server's limit on what `copy` operations may add.
pub fn json_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    json_patch_limited(doc, patch, crate::server::MAX_BODY)
}

// The shared default and the server's body limit are the same bound.
const _: () = assert!(objmerge::patch::DEFAULT_COPY_LIMIT == crate::server::MAX_BODY);
