//! gclip-eval
