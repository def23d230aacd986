//! gclip-train
