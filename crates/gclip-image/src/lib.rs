//! gclip-image
