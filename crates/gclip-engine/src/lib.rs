//! gclip-engine
