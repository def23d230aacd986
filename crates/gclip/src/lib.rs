//! gclip
