//! gclip-model
