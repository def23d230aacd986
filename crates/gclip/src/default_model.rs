//! The embedded default model (see the README section "The embedded default model").

use crate::source::EmbeddedModel;

pub(crate) const EMBEDDED: Option<EmbeddedModel> = None;
