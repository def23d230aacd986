//! gclip-tokenizer
