//! gclip-synth
