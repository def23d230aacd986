//! A small interpreter for the pickle streams `torch.save` writes (`data.pkl` inside the zip
//! archive). It never runs code: globals are only names, and the few callables a state dict
//! needs (`torch._utils._rebuild_tensor_v2`, `collections.OrderedDict`, ...) are recognised by
//! name; any other call becomes an opaque object, which is fine as long as no tensor is behind
//! it.
//!
//! Every length and index read from the stream is checked against the bytes left, so a
//! truncated or corrupt file is an error, never a panic or a huge allocation.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::tensor::DType;

/// What is wrong with a pickle stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickleError {
    /// The stream ends inside an opcode or before `STOP`.
    #[error("pickle stream ends early at byte {offset} (truncated file?)")]
    Truncated {
        /// Where the missing bytes should have been.
        offset: usize,
    },
    /// A byte that is no pickle opcode.
    #[error("unknown pickle opcode 0x{opcode:02x} at byte {offset}")]
    UnknownOpcode {
        /// The byte.
        opcode: u8,
        /// Its position.
        offset: usize,
    },
    /// An opcode whose operands are not what it needs (empty stack, bad memo index, ...).
    #[error("malformed pickle at byte {offset}: {detail}")]
    Malformed {
        /// Position of the opcode.
        offset: usize,
        /// What was wrong.
        detail: String,
    },
    /// A valid pickle that does not hold a state dict this reader can use.
    #[error("{0}")]
    NotAStateDict(String),
}

/// A storage a tensor points into: `archive/data/<key>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StorageRef {
    /// Element type, or the storage class name when it is not a supported type.
    pub dtype: Result<DType, String>,
    /// Member name under `data/`.
    pub key: String,
    /// Elements in the storage.
    pub numel: usize,
}

/// A tensor view as pickled: storage, element offset, size and strides (in elements).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TensorRef {
    pub storage: Rc<StorageRef>,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub strides: Vec<usize>,
}

type Shared<T> = Rc<RefCell<T>>;

/// A pickled value. Lists and dicts are shared so a memoised container sees later mutations,
/// as in Python.
#[derive(Clone)]
pub(crate) enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits (kept only as a placeholder).
    BigInt,
    // Payloads of scalars and bytes are kept so the value model is complete, though only
    // tensors and their arguments are read back.
    #[allow(dead_code)]
    Float(f64),
    Str(String),
    #[allow(dead_code)]
    Bytes(Vec<u8>),
    List(Shared<Vec<Value>>),
    Tuple(Rc<Vec<Value>>),
    Dict(Shared<Vec<(Value, Value)>>),
    Global(Rc<(String, String)>),
    Storage(Rc<StorageRef>),
    Tensor(Rc<TensorRef>),
    /// Result of a call or class instantiation this reader does not model.
    Object(Rc<String>),
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::List(_) => "list",
            Value::Tuple(_) => "tuple",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
            Value::Object(_) => "object",
        }
    }
}

struct Vm<'a> {
    data: &'a [u8],
    pos: usize,
    /// Position of the opcode being executed (for messages).
    op_at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
}

fn storage_dtype(class: &str) -> Result<DType, String> {
    match class {
        "FloatStorage" => Ok(DType::F32),
        "HalfStorage" => Ok(DType::F16),
        "BFloat16Storage" => Ok(DType::BF16),
        "DoubleStorage" => Ok(DType::F64),
        "LongStorage" => Ok(DType::I64),
        other => Err(other.to_string()),
    }
}

impl<'a> Vm<'a> {
    fn malformed(&self, detail: impl Into<String>) -> PickleError {
        PickleError::Malformed {
            offset: self.op_at,
            detail: detail.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or(PickleError::Truncated {
                offset: self.data.len(),
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, PickleError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, PickleError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, PickleError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        let n = self.u64()?;
        usize::try_from(n).map_err(|_| PickleError::Truncated {
            offset: self.data.len(),
        })
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated {
                offset: self.data.len(),
            })?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.malformed("non-UTF-8 text"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value, PickleError> {
        // A marker sitting above the last MARK's position is not a value.
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.malformed("pop below a MARK"));
        }
        self.stack
            .pop()
            .ok_or_else(|| self.malformed("pop from an empty stack"))
    }

    fn top_mut(&mut self) -> Result<&mut Value, PickleError> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err(self.malformed("no value above the MARK"));
        }
        let at = self.op_at;
        self.stack.last_mut().ok_or(PickleError::Malformed {
            offset: at,
            detail: "empty stack".into(),
        })
    }

    /// Values pushed since the last MARK (which is removed).
    fn pop_mark(&mut self) -> Result<Vec<Value>, PickleError> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| self.malformed("no MARK to pop to"))?;
        if m > self.stack.len() {
            return Err(self.malformed("MARK above the stack"));
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_get(&self, idx: u64) -> Result<Value, PickleError> {
        self.memo
            .get(&idx)
            .cloned()
            .ok_or_else(|| self.malformed(format!("memo index {idx} not set")))
    }

    fn memo_put(&mut self, idx: u64) -> Result<(), PickleError> {
        let v = self
            .stack
            .last()
            .cloned()
            .ok_or_else(|| self.malformed("memoise from an empty stack"))?;
        self.memo.insert(idx, v);
        Ok(())
    }

    fn int_arg(&self, v: &Value, what: &str) -> Result<usize, PickleError> {
        match v {
            Value::Int(i) if *i >= 0 => Ok(*i as usize),
            Value::Bool(b) => Ok(*b as usize),
            other => Err(self.malformed(format!(
                "{what} must be a non-negative int, got {}",
                other.kind()
            ))),
        }
    }

    fn int_tuple(&self, v: &Value, what: &str) -> Result<Vec<usize>, PickleError> {
        let items: Vec<Value> = match v {
            Value::Tuple(t) => t.as_ref().clone(),
            Value::List(l) => l.borrow().clone(),
            other => {
                return Err(self.malformed(format!(
                    "{what} must be a tuple of ints, got {}",
                    other.kind()
                )))
            }
        };
        items.iter().map(|x| self.int_arg(x, what)).collect()
    }

    fn persistent_load(&self, pid: Value) -> Result<Value, PickleError> {
        let Value::Tuple(t) = pid else {
            return Err(
                self.malformed(format!("persistent id must be a tuple, got {}", pid.kind()))
            );
        };
        match t.as_slice() {
            [Value::Str(tag), class, Value::Str(key), _location, numel] if tag == "storage" => {
                let class = match class {
                    Value::Global(g) => g.1.clone(),
                    other => {
                        return Err(self.malformed(format!(
                            "storage type must be a global, got {}",
                            other.kind()
                        )))
                    }
                };
                Ok(Value::Storage(Rc::new(StorageRef {
                    dtype: storage_dtype(&class),
                    key: key.clone(),
                    numel: self.int_arg(numel, "storage size")?,
                })))
            }
            _ => Err(self.malformed("persistent id is not ('storage', type, key, location, size)")),
        }
    }

    fn call(&self, func: Value, args: Value) -> Result<Value, PickleError> {
        let Value::Global(g) = &func else {
            return Ok(Value::Object(Rc::new(format!("call of {}", func.kind()))));
        };
        let args: Vec<Value> = match &args {
            Value::Tuple(t) => t.as_ref().clone(),
            other => {
                return Err(self.malformed(format!(
                    "arguments of {}.{} must be a tuple, got {}",
                    g.0,
                    g.1,
                    other.kind()
                )))
            }
        };
        match (g.0.as_str(), g.1.as_str()) {
            ("torch._utils", "_rebuild_tensor_v2" | "_rebuild_tensor") => {
                let [storage, offset, size, stride, ..] = args.as_slice() else {
                    return Err(self.malformed(format!("{} with {} arguments", g.1, args.len())));
                };
                let Value::Storage(storage) = storage else {
                    return Err(self.malformed(format!(
                        "{} needs a storage, got {}",
                        g.1,
                        storage.kind()
                    )));
                };
                let shape = self.int_tuple(size, "tensor size")?;
                let strides = self.int_tuple(stride, "tensor stride")?;
                if shape.len() != strides.len() {
                    return Err(self.malformed(format!(
                        "tensor size {shape:?} and stride {strides:?} differ in rank"
                    )));
                }
                Ok(Value::Tensor(Rc::new(TensorRef {
                    storage: storage.clone(),
                    offset: self.int_arg(offset, "storage offset")?,
                    shape,
                    strides,
                })))
            }
            ("torch._utils", "_rebuild_parameter" | "_rebuild_parameter_with_state") => args
                .into_iter()
                .next()
                .ok_or_else(|| self.malformed("_rebuild_parameter without arguments")),
            ("collections", "OrderedDict") | ("builtins" | "__builtin__", "dict") => {
                let mut items = Vec::new();
                if let Some(Value::List(l)) = args.first() {
                    for pair in l.borrow().iter() {
                        if let Value::Tuple(kv) = pair {
                            if let [k, v] = kv.as_slice() {
                                items.push((k.clone(), v.clone()));
                            }
                        }
                    }
                }
                Ok(Value::Dict(Rc::new(RefCell::new(items))))
            }
            ("_codecs", "encode") => match args.first() {
                // Protocol-2 bytes: _codecs.encode(text, "latin1").
                Some(Value::Str(s)) => Ok(Value::Bytes(s.chars().map(|c| c as u8).collect())),
                _ => Ok(Value::Bytes(Vec::new())),
            },
            (m, n) => Ok(Value::Object(Rc::new(format!("{m}.{n}")))),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            self.op_at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO n
                }
                0x95 => {
                    self.u64()?; // FRAME length: frames are only a buffering hint
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self
                        .stack
                        .last()
                        .cloned()
                        .ok_or_else(|| self.malformed("DUP on an empty stack"))?;
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.u8()? as usize
                    } else {
                        let n = self.u32()? as i32;
                        usize::try_from(n).map_err(|_| self.malformed("negative LONG4 size"))?
                    };
                    let b = self.take(n)?;
                    let v = if n == 0 {
                        Value::Int(0)
                    } else if n <= 8 {
                        let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
                        let mut a = [fill; 8];
                        a[..n].copy_from_slice(b);
                        Value::Int(i64::from_le_bytes(a))
                    } else {
                        Value::BigInt
                    };
                    self.stack.push(v);
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l {
                        "01" => Value::Bool(true),
                        "00" => Value::Bool(false),
                        s => Value::Int(
                            s.parse()
                                .map_err(|_| self.malformed(format!("bad INT `{s}`")))?,
                        ),
                    };
                    self.stack.push(v);
                }
                b'L' => {
                    let l = self.line()?.trim_end_matches('L');
                    self.stack
                        .push(l.parse().map(Value::Int).unwrap_or(Value::BigInt));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    self.stack.push(Value::Float(f64::from_be_bytes(a)));
                }
                b'F' => {
                    let l = self.line()?;
                    let f = l
                        .parse()
                        .map_err(|_| self.malformed(format!("bad FLOAT `{l}`")))?;
                    self.stack.push(Value::Float(f));
                }
                b'X' | 0x8c | 0x8d | b'T' | b'U' => {
                    let n = match op {
                        b'X' | b'T' => self.u32()? as usize,
                        0x8d => self.len_u64()?,
                        _ => self.u8()? as usize,
                    };
                    let b = self.take(n)?;
                    let s = if matches!(op, b'T' | b'U') {
                        // Python 2 str: bytes, decoded as Latin-1.
                        b.iter().map(|&c| c as char).collect()
                    } else {
                        std::str::from_utf8(b)
                            .map_err(|_| self.malformed("string is not UTF-8"))?
                            .to_string()
                    };
                    self.stack.push(Value::Str(s));
                }
                b'V' => {
                    let s = self.line()?.to_string();
                    self.stack.push(Value::Str(s));
                }
                b'S' => {
                    let l = self.line()?;
                    let s = l.trim_matches(|c| c == '\'' || c == '"').to_string();
                    self.stack.push(Value::Str(s));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.u32()? as usize,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.stack.push(Value::Bytes(b));
                }
                b']' => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'a' => {
                    let v = self.pop()?;
                    match self.top_mut()? {
                        Value::List(l) => l.borrow_mut().push(v),
                        other => {
                            let k = other.kind();
                            return Err(self.malformed(format!("APPEND to a {k}")));
                        }
                    }
                }
                b'e' => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => {
                            let k = other.kind();
                            return Err(self.malformed(format!("APPENDS to a {k}")));
                        }
                    }
                }
                0x8f => self
                    .stack
                    .push(Value::List(Rc::new(RefCell::new(Vec::new())))),
                0x90 => {
                    let items = self.pop_mark()?;
                    match self.top_mut()? {
                        Value::List(l) => l.borrow_mut().extend(items),
                        other => {
                            let k = other.kind();
                            return Err(self.malformed(format!("ADDITEMS to a {k}")));
                        }
                    }
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::List(Rc::new(RefCell::new(items))));
                }
                b'}' => self
                    .stack
                    .push(Value::Dict(Rc::new(RefCell::new(Vec::new())))),
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items).ok_or_else(|| self.malformed("odd DICT items"))?;
                    self.stack.push(Value::Dict(Rc::new(RefCell::new(pairs))));
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    self.set_items(vec![(k, v)])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items).ok_or_else(|| self.malformed("odd SETITEMS"))?;
                    self.set_items(pairs)?;
                }
                b')' => self.stack.push(Value::Tuple(Rc::new(Vec::new()))),
                b't' => {
                    let items = self.pop_mark()?;
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.stack.push(Value::Tuple(Rc::new(items)));
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.stack.push(Value::Global(Rc::new((module, name))));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.stack.push(Value::Global(Rc::new((m, n))))
                        }
                        _ => return Err(self.malformed("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.call(func, args)?;
                    self.stack.push(v);
                }
                0x81 => {
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(instance(&cls));
                }
                0x92 => {
                    let _kwargs = self.pop()?;
                    let _args = self.pop()?;
                    let cls = self.pop()?;
                    self.stack.push(instance(&cls));
                }
                b'b' => {
                    // BUILD sets attributes (an OrderedDict's `_metadata`, an object's state);
                    // none of them holds state-dict entries.
                    self.pop()?;
                    self.top_mut()?;
                }
                b'i' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.pop_mark()?;
                    self.stack
                        .push(Value::Object(Rc::new(format!("{module}.{name}"))));
                }
                b'o' => {
                    let items = self.pop_mark()?;
                    let cls = items.first().cloned().unwrap_or(Value::None);
                    self.stack.push(instance(&cls));
                }
                b'p' => {
                    let l = self.line()?;
                    let idx = l
                        .parse()
                        .map_err(|_| self.malformed(format!("bad PUT index `{l}`")))?;
                    self.memo_put(idx)?;
                }
                b'q' => {
                    let idx = self.u8()? as u64;
                    self.memo_put(idx)?;
                }
                b'r' => {
                    let idx = self.u32()? as u64;
                    self.memo_put(idx)?;
                }
                0x94 => {
                    let idx = self.memo.len() as u64;
                    self.memo_put(idx)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let idx = l
                        .parse()
                        .map_err(|_| self.malformed(format!("bad GET index `{l}`")))?;
                    let v = self.memo_get(idx)?;
                    self.stack.push(v);
                }
                b'h' => {
                    let idx = self.u8()? as u64;
                    let v = self.memo_get(idx)?;
                    self.stack.push(v);
                }
                b'j' => {
                    let idx = self.u32()? as u64;
                    let v = self.memo_get(idx)?;
                    self.stack.push(v);
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent_load(pid)?;
                    self.stack.push(v);
                }
                b'P' => {
                    return Err(
                        self.malformed("text persistent ids (PERSID) are not used by torch.save")
                    )
                }
                opcode => {
                    return Err(PickleError::UnknownOpcode {
                        opcode,
                        offset: self.op_at,
                    })
                }
            }
        }
    }

    fn set_items(&mut self, items: Vec<(Value, Value)>) -> Result<(), PickleError> {
        match self.top_mut()? {
            Value::Dict(d) => {
                let mut d = d.borrow_mut();
                for (k, v) in items {
                    // Python dict semantics: a repeated key replaces the value in place.
                    match d.iter_mut().find(|(ek, _)| same_key(ek, &k)) {
                        Some(slot) => slot.1 = v,
                        None => d.push((k, v)),
                    }
                }
                Ok(())
            }
            // Objects restored through __setstate__-like item calls: ignore.
            Value::Object(_) => Ok(()),
            other => {
                let k = other.kind();
                Err(self.malformed(format!("SETITEM on a {k}")))
            }
        }
    }
}

fn same_key(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Str(x), Value::Str(y)) => x == y,
        (Value::Int(x), Value::Int(y)) => x == y,
        _ => false,
    }
}

fn instance(cls: &Value) -> Value {
    match cls {
        Value::Global(g) if g.1 == "OrderedDict" => Value::Dict(Rc::new(RefCell::new(Vec::new()))),
        Value::Global(g) => Value::Object(Rc::new(format!("{}.{}", g.0, g.1))),
        other => Value::Object(Rc::new(other.kind().to_string())),
    }
}

fn pairs(items: Vec<Value>) -> Option<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        return None;
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Some(out)
}

/// Runs a pickle stream and returns the value it builds.
pub(crate) fn parse(data: &[u8]) -> Result<Value, PickleError> {
    Vm {
        data,
        pos: 0,
        op_at: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    }
    .run()
}

/// The tensors of the state dict a pickle holds: the root dict, or the `state_dict` entry of a
/// training checkpoint (repeatedly, for nested wrappers). Non-tensor entries are skipped.
pub(crate) fn state_dict_tensors(root: &Value) -> Result<Vec<(String, TensorRef)>, PickleError> {
    let mut dict = match root {
        Value::Dict(d) => d.clone(),
        other => {
            return Err(PickleError::NotAStateDict(format!(
                "the pickle holds a {} (a whole pickled module?), not a state dict; save \
                 `model.state_dict()` instead",
                match other {
                    Value::Object(name) => name.as_str(),
                    v => v.kind(),
                }
            )))
        }
    };
    for _ in 0..8 {
        let inner = dict.borrow().iter().find_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Dict(d)) if k == "state_dict" => Some(d.clone()),
            _ => None,
        });
        match inner {
            Some(d) => dict = d,
            None => break,
        }
    }
    let out: Vec<(String, TensorRef)> = dict
        .borrow()
        .iter()
        .filter_map(|(k, v)| match (k, v) {
            (Value::Str(k), Value::Tensor(t)) => Some((k.clone(), t.as_ref().clone())),
            _ => None,
        })
        .collect();
    if out.is_empty() {
        return Err(PickleError::NotAStateDict(
            "the checkpoint holds no tensors (neither a state dict nor {state_dict: ...})".into(),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{"w": _rebuild_tensor_v2(storage('0', Float, 6), 0, (2, 3), (3, 1), False, OrderedDict())}`
    /// written by hand in protocol 2.
    fn tiny() -> Vec<u8> {
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X'];
        p.extend(1u32.to_le_bytes());
        p.push(b'w');
        p.extend(b"ctorch._utils\n_rebuild_tensor_v2\n(");
        p.extend(b"(X");
        p.extend(7u32.to_le_bytes());
        p.extend(b"storage");
        p.extend(b"ctorch\nFloatStorage\n");
        p.push(b'X');
        p.extend(1u32.to_le_bytes());
        p.push(b'0');
        p.push(b'X');
        p.extend(3u32.to_le_bytes());
        p.extend(b"cpu");
        p.extend([
            b'K', 6, b't', b'Q', b'K', 0, b'K', 2, b'K', 3, 0x86, b'K', 3, b'K', 1, 0x86,
        ]);
        p.extend([0x89]);
        p.extend(b"ccollections\nOrderedDict\n)R");
        p.extend([b't', b'R', b'u', b'.']);
        p
    }

    #[test]
    fn hand_written_state_dict() {
        let v = parse(&tiny()).unwrap();
        let t = state_dict_tensors(&v).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].0, "w");
        assert_eq!(t[0].1.shape, vec![2, 3]);
        assert_eq!(t[0].1.strides, vec![3, 1]);
        assert_eq!(t[0].1.storage.dtype, Ok(DType::F32));
        assert_eq!(t[0].1.storage.numel, 6);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let p = tiny();
        for n in 0..p.len() {
            assert!(parse(&p[..n]).is_err(), "prefix of {n} bytes parsed");
        }
    }

    #[test]
    fn corrupt_bytes_never_panic() {
        let p = tiny();
        for i in 0..p.len() {
            for b in [0u8, 0xff, b'(', b'.', b'h', b'u', b'R'] {
                let mut q = p.clone();
                q[i] = b;
                if let Ok(v) = parse(&q) {
                    let _ = state_dict_tensors(&v);
                }
            }
        }
        assert!(matches!(
            parse(&[0x80, 2, 0xfe]),
            Err(PickleError::UnknownOpcode { opcode: 0xfe, .. })
        ));
        assert!(matches!(
            parse(&[b'X', 0xff, 0xff, 0xff, 0x7f]),
            Err(PickleError::Truncated { .. })
        ));
    }
}
