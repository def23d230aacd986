//! Errors cross into Python as the package's exception classes (defined in
//! `gclip/_errors.py`), carrying the message the CLI prints for the same failure.

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

/// Which Python exception class a failure becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Anything else the library reports.
    General,
    /// Loading or running a model (checkpoint, tokenizer, engine).
    Model,
    /// An image that cannot be read, decoded or preprocessed.
    Image,
    /// Arguments the library rejects (shapes, empty label lists, bad settings).
    Invalid,
    /// The search library (with Marqo's error code and HTTP status).
    Index,
    /// Training.
    Train,
}

impl Kind {
    fn class_name(self) -> &'static str {
        match self {
            Kind::General => "GclipError",
            Kind::Model => "ModelError",
            Kind::Image => "ImageError",
            Kind::Invalid => "InvalidInputError",
            Kind::Index => "SearchIndexError",
            Kind::Train => "TrainError",
        }
    }
}

/// A failure on its way to Python; built without the GIL, raised with it.
#[derive(Debug)]
pub struct Failure {
    pub kind: Kind,
    pub message: String,
    /// Marqo's error code (index errors).
    pub code: Option<String>,
    /// The HTTP status Marqo would answer with (index errors).
    pub status: Option<u16>,
}

impl Failure {
    pub fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            code: None,
            status: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Kind::Invalid, message)
    }

    /// Prefixes the message with what was being done (the CLI's `anyhow` context).
    pub fn context(mut self, what: impl std::fmt::Display) -> Self {
        self.message = format!("{what}: {}", self.message);
        self
    }
}

/// The error and its sources, each source appended unless its text is already in the
/// message (most of gclip's errors print their source themselves).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !t.is_empty() && !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

impl From<gclip::Error> for Failure {
    fn from(e: gclip::Error) -> Self {
        use gclip::Error as E;
        let kind = match &e {
            E::Image { .. } | E::Preprocess(_) => Kind::Image,
            E::Model(_)
            | E::Tokenizer(_)
            | E::Engine(_)
            | E::Tensor(_)
            | E::Safetensors(_)
            | E::NoDefaultModel(_) => Kind::Model,
            E::Train(_) => Kind::Train,
            E::Invalid(_) | E::Vectors(_) => Kind::Invalid,
            _ => Kind::General,
        };
        Failure::new(kind, chain(&e))
    }
}

impl From<gclip::index::Error> for Failure {
    fn from(e: gclip::index::Error) -> Self {
        Failure {
            kind: Kind::Index,
            message: chain(&e),
            code: Some(e.code().to_string()),
            status: Some(e.http_status()),
        }
    }
}

impl From<gclip::VectorError> for Failure {
    fn from(e: gclip::VectorError) -> Self {
        Failure::invalid(chain(&e))
    }
}

impl From<gclip::train::TrainError> for Failure {
    fn from(e: gclip::train::TrainError) -> Self {
        Failure::new(Kind::Train, chain(&e))
    }
}

impl From<serde_json::Error> for Failure {
    fn from(e: serde_json::Error) -> Self {
        Failure::invalid(format!("invalid JSON: {e}"))
    }
}

impl From<Failure> for PyErr {
    fn from(f: Failure) -> PyErr {
        Python::attach(|py| {
            let raised = (|| -> PyResult<PyErr> {
                let cls = py.import("gclip._errors")?.getattr(f.kind.class_name())?;
                let inst = cls.call1((f.message.clone(),))?;
                if let Some(c) = &f.code {
                    inst.setattr("code", c)?;
                }
                if let Some(s) = f.status {
                    inst.setattr("status", s)?;
                }
                Ok(PyErr::from_value(inst))
            })();
            // Without the Python half (a bare import of the native module) the message
            // still arrives.
            raised.unwrap_or_else(|_| PyRuntimeError::new_err(f.message))
        })
    }
}

pub type Result<T, E = Failure> = std::result::Result<T, E>;
