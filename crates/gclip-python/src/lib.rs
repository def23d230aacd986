//! `gclip._gclip`: the native half of the gclip Python package.
//!
//! A thin skin over the `gclip` facade: every call converts its Python arguments, releases the
//! GIL while the facade works, and converts the result back (numpy float32 rows, JSON for
//! documents and search replies). The public, documented API is the Python package
//! (`python/gclip`), which normalises inputs (PIL images, path-likes, array layouts) before
//! calling in here.

mod errors;
mod images;
mod index;
mod model;
mod train;

use pyo3::prelude::*;

#[pymodule]
fn _gclip(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<model::PyModel>()?;
    m.add_class::<index::PyIndex>()?;
    m.add_function(wrap_pyfunction!(model::load, m)?)?;
    m.add_function(wrap_pyfunction!(model::cosine_matrix, m)?)?;
    m.add_function(wrap_pyfunction!(model::softmax_rows, m)?)?;
    m.add_function(wrap_pyfunction!(model::imagenet_templates, m)?)?;
    m.add_function(wrap_pyfunction!(index::list_indexes, m)?)?;
    m.add_function(wrap_pyfunction!(index::drop_index, m)?)?;
    m.add_function(wrap_pyfunction!(train::train, m)?)?;
    Ok(())
}
