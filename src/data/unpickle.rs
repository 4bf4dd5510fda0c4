//! A bounded pickle reader (protocols 0–5) into [`PyValue`], for files Python wrote.
//!
//! Bounds: the file size ([`MAX_PICKLE_BYTES`]), the nesting depth ([`MAX_DEPTH`]) and the
//! size of the result (memo references expand into copies; [`node_budget`]), so that a small
//! hostile file cannot take unbounded memory, time or stack. Objects Python keeps shared
//! (a list put in the memo and appended to afterwards) are shared here too, until the end.
//!
//! numpy values, as numpy-using Python pickles them, are read as plain numbers and lists:
//! scalars (`numpy.core.multiarray.scalar`), arrays (`_reconstruct` + `BUILD`, and protocol
//! 5's `numpy.core.numeric._frombuffer`) of bool, int, uint and float dtypes. Other objects are
//! an error that names the Python type.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use anyhow::{Result, anyhow, bail};
use serde_pickle::HashableValue;

use super::pickle::PyValue;

/// Largest pickle file read (bytes).
pub const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Most values (numbers, strings, containers) one pickle may create while it is read, which
/// bounds the reader's memory (about 100 bytes each) whatever the file holds.
pub const MAX_VALUES: usize = 8_000_000;
/// Deepest nesting of lists, tuples and dicts accepted.
pub const MAX_DEPTH: usize = 64;

/// Values (and 8-byte units of strings) a file of `len` bytes may expand to: a few per byte,
/// which no pickle that shares nothing exceeds.
pub fn node_budget(len: usize) -> usize {
    4 * len + 4096
}

type Ref = usize;

#[derive(Clone, Debug)]
enum Obj {
    Value(PyValue),
    List(Vec<Ref>),
    Tuple(Vec<Ref>),
    Dict(Vec<(Ref, Ref)>),
    Set(Vec<Ref>),
    FrozenSet(Vec<Ref>),
    /// `module.name`.
    Global(String, String),
    /// A numpy dtype: kind and size (`f8`, `i4`, `b1`, `u2`…) and byte order.
    Dtype {
        descr: String,
        big_endian: bool,
    },
    /// A numpy array: shape, dtype, Fortran order, raw data (set by BUILD).
    Array {
        shape: Vec<usize>,
        dtype: Option<Ref>,
        fortran: bool,
        data: Vec<u8>,
    },
}

struct Machine<'a> {
    bytes: &'a [u8],
    pos: usize,
    objs: Vec<Obj>,
    stack: Vec<Ref>,
    marks: Vec<usize>,
    memo: HashMap<u64, Ref>,
}

/// Reads a pickle into a value; errors say what is wrong and at which byte.
pub fn unpickle(bytes: &[u8]) -> Result<PyValue> {
    let mut m = Machine {
        bytes,
        pos: 0,
        objs: Vec::new(),
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
    };
    let root = m.run()?;
    let mut budget = node_budget(bytes.len());
    m.value(root, 0, &mut budget)
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let bytes: &'a [u8] = self.bytes;
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= bytes.len())
            .ok_or_else(|| anyhow!("truncated at byte {} (needs {n} more bytes)", self.pos))?;
        let s = &bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, n: usize) -> Result<u64> {
        let b = self.take(n)?;
        Ok(b.iter().rev().fold(0u64, |acc, &x| (acc << 8) | x as u64))
    }

    fn len_arg(&mut self, n: usize) -> Result<usize> {
        let l = self.uint(n)?;
        if l > (self.bytes.len() - self.pos) as u64 {
            bail!(
                "length {l} at byte {} runs past the end of the file",
                self.pos
            );
        }
        Ok(l as usize)
    }

    fn line(&mut self) -> Result<String> {
        let rest = &self.bytes[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| anyhow!("truncated text argument at byte {}", self.pos))?;
        let s = String::from_utf8_lossy(&rest[..n]).into_owned();
        self.pos += n + 1;
        Ok(s)
    }

    fn new_obj(&mut self, o: Obj) -> Ref {
        self.objs.push(o);
        self.objs.len() - 1
    }

    fn push(&mut self, o: Obj) {
        let r = self.new_obj(o);
        self.stack.push(r);
    }

    fn push_value(&mut self, v: PyValue) {
        self.push(Obj::Value(v));
    }

    fn pop(&mut self) -> Result<Ref> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            bail!("stack underflow below a mark at byte {}", self.pos);
        }
        self.stack
            .pop()
            .ok_or_else(|| anyhow!("stack underflow at byte {}", self.pos))
    }

    fn top(&self) -> Result<Ref> {
        self.stack
            .last()
            .copied()
            .ok_or_else(|| anyhow!("stack underflow at byte {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Ref>> {
        let m = self
            .marks
            .pop()
            .ok_or_else(|| anyhow!("no mark on the stack at byte {}", self.pos))?;
        if m > self.stack.len() {
            bail!("mark above the stack at byte {}", self.pos);
        }
        Ok(self.stack.split_off(m))
    }

    fn memo_put(&mut self, id: u64) -> Result<()> {
        let r = self.top()?;
        self.memo.insert(id, r);
        Ok(())
    }

    fn memo_get(&mut self, id: u64) -> Result<()> {
        let r = *self
            .memo
            .get(&id)
            .ok_or_else(|| anyhow!("memo entry {id} was never stored (byte {})", self.pos))?;
        self.stack.push(r);
        Ok(())
    }

    fn append(&mut self, target: Ref, items: Vec<Ref>) -> Result<()> {
        match &mut self.objs[target] {
            Obj::List(v) | Obj::Set(v) => {
                v.extend(items);
                Ok(())
            }
            _ => bail!("APPEND to something not a list (byte {})", self.pos),
        }
    }

    fn set_items(&mut self, target: Ref, items: Vec<Ref>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            bail!("odd number of dict items at byte {}", self.pos);
        }
        match &mut self.objs[target] {
            Obj::Dict(d) => {
                d.extend(items.chunks(2).map(|kv| (kv[0], kv[1])));
                Ok(())
            }
            _ => bail!("SETITEM on something not a dict (byte {})", self.pos),
        }
    }

    fn run(&mut self) -> Result<Ref> {
        loop {
            let at = self.pos;
            if self.objs.len() > MAX_VALUES {
                bail!("more than {MAX_VALUES} values (byte {at})");
            }
            let op = *self
                .bytes
                .get(self.pos)
                .ok_or_else(|| anyhow!("truncated: no STOP opcode at the end"))?;
            self.pos += 1;
            match op {
                0x80 => {
                    let p = self.uint(1)?;
                    if p > 5 {
                        bail!("unsupported pickle protocol {p}");
                    }
                }
                0x95 => {
                    self.uint(8)?; // FRAME: a hint only
                }
                b'.' => {
                    let r = self.pop()?;
                    return Ok(r);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let r = self.top()?;
                    self.stack.push(r);
                }
                b'N' => self.push_value(PyValue::None),
                0x88 => self.push_value(PyValue::Bool(true)),
                0x89 => self.push_value(PyValue::Bool(false)),
                b'J' => {
                    let v = self.uint(4)? as u32 as i32;
                    self.push_value(PyValue::I64(v as i64));
                }
                b'K' => {
                    let v = self.uint(1)?;
                    self.push_value(PyValue::I64(v as i64));
                }
                b'M' => {
                    let v = self.uint(2)?;
                    self.push_value(PyValue::I64(v as i64));
                }
                b'I' => {
                    let l = self.line()?;
                    let v = match l.trim() {
                        "01" => PyValue::Bool(true),
                        "00" => PyValue::Bool(false),
                        t => PyValue::I64(
                            t.parse()
                                .map_err(|_| anyhow!("bad INT `{t}` at byte {at}"))?,
                        ),
                    };
                    self.push_value(v);
                }
                b'L' => {
                    let l = self.line()?;
                    let t = l.trim().trim_end_matches('L');
                    let v: i64 = t.parse().map_err(|_| {
                        anyhow!("integer `{t}` at byte {at} does not fit in 64 bits")
                    })?;
                    self.push_value(PyValue::I64(v));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a {
                        self.uint(1)? as usize
                    } else {
                        self.len_arg(4)?
                    };
                    let b = self.take(n)?;
                    if n > 8 {
                        bail!("integer of {n} bytes at byte {at} does not fit in 64 bits");
                    }
                    let mut v: i64 = 0;
                    for (i, &x) in b.iter().enumerate() {
                        v |= (x as i64) << (8 * i);
                    }
                    if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                        v -= 1i64 << (8 * n); // sign extension
                    }
                    self.push_value(PyValue::I64(v));
                }
                b'F' => {
                    let l = self.line()?;
                    let v: f64 = l
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("bad FLOAT `{l}` at byte {at}"))?;
                    self.push_value(PyValue::F64(v));
                }
                b'G' => {
                    let b = self.take(8)?;
                    let v = f64::from_be_bytes(b.try_into().unwrap_or([0; 8]));
                    self.push_value(PyValue::F64(v));
                }
                // Python 2 str: text when it is UTF-8
                b'S' => {
                    let l = self.line()?;
                    let t = l.trim();
                    let q = t.chars().next().filter(|c| *c == '\'' || *c == '"');
                    let inner = match q {
                        Some(q) if t.len() >= 2 && t.ends_with(q) => &t[1..t.len() - 1],
                        _ => bail!("bad STRING argument at byte {at}"),
                    };
                    self.push_value(PyValue::String(unescape(inner)));
                }
                b'T' | b'U' => {
                    let n = if op == b'T' {
                        self.len_arg(4)?
                    } else {
                        self.len_arg(1)?
                    };
                    let b = self.take(n)?.to_vec();
                    self.push_value(match String::from_utf8(b) {
                        Ok(s) => PyValue::String(s),
                        Err(e) => PyValue::Bytes(e.into_bytes()),
                    });
                }
                b'V' => {
                    let l = self.line()?;
                    self.push_value(PyValue::String(unescape(&l)));
                }
                b'X' | 0x8c | 0x8d => {
                    let n = match op {
                        b'X' => self.len_arg(4)?,
                        0x8c => self.len_arg(1)?,
                        _ => self.len_arg(8)?,
                    };
                    let b = self.take(n)?;
                    let s = std::str::from_utf8(b)
                        .map_err(|_| anyhow!("string at byte {at} is not valid UTF-8"))?
                        .to_string();
                    self.push_value(PyValue::String(s));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_arg(4)?,
                        b'C' => self.len_arg(1)?,
                        _ => self.len_arg(8)?,
                    };
                    let b = self.take(n)?.to_vec();
                    self.push_value(PyValue::Bytes(b));
                }
                b']' => self.push(Obj::List(Vec::new())),
                b')' => self.push(Obj::Tuple(Vec::new())),
                b'}' => self.push(Obj::Dict(Vec::new())),
                0x8f => self.push(Obj::Set(Vec::new())),
                b'l' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::List(items));
                }
                b't' => {
                    let items = self.pop_mark()?;
                    self.push(Obj::Tuple(items));
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    self.push(Obj::Tuple(items));
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let r = self.new_obj(Obj::Dict(Vec::new()));
                    self.set_items(r, items)?;
                    self.stack.push(r);
                }
                0x91 => {
                    let items = self.pop_mark()?;
                    self.push(Obj::FrozenSet(items));
                }
                b'a' => {
                    let item = self.pop()?;
                    let target = self.top()?;
                    self.append(target, vec![item])?;
                }
                b'e' | 0x90 => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.append(target, items)?;
                }
                b's' => {
                    let v = self.pop()?;
                    let k = self.pop()?;
                    let target = self.top()?;
                    self.set_items(target, vec![k, v])?;
                }
                b'u' => {
                    let items = self.pop_mark()?;
                    let target = self.top()?;
                    self.set_items(target, items)?;
                }
                b'p' => {
                    let l = self.line()?;
                    let id = l
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("bad PUT `{l}` at byte {at}"))?;
                    self.memo_put(id)?;
                }
                b'q' => {
                    let id = self.uint(1)?;
                    self.memo_put(id)?;
                }
                b'r' => {
                    let id = self.uint(4)?;
                    self.memo_put(id)?;
                }
                0x94 => {
                    let id = self.memo.len() as u64;
                    self.memo_put(id)?;
                }
                b'g' => {
                    let l = self.line()?;
                    let id = l
                        .trim()
                        .parse()
                        .map_err(|_| anyhow!("bad GET `{l}` at byte {at}"))?;
                    self.memo_get(id)?;
                }
                b'h' => {
                    let id = self.uint(1)?;
                    self.memo_get(id)?;
                }
                b'j' => {
                    let id = self.uint(4)?;
                    self.memo_get(id)?;
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Obj::Global(module, name));
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let text = |m: &Self, r: Ref| match &m.objs[r] {
                        Obj::Value(PyValue::String(s)) => Ok(s.clone()),
                        _ => Err(anyhow!("STACK_GLOBAL needs two strings (byte {at})")),
                    };
                    let (module, name) = (text(&*self, module)?, text(&*self, name)?);
                    self.push(Obj::Global(module, name));
                }
                b'R' | 0x81 => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let args = match &self.objs[args] {
                        Obj::Tuple(a) => a.clone(),
                        _ => bail!("REDUCE arguments are not a tuple (byte {at})"),
                    };
                    let o = self.reduce(func, &args)?;
                    self.push(o);
                }
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }
                other => bail!(
                    "unsupported pickle opcode 0x{other:02x} at byte {at} (not a plain Python value)"
                ),
            }
        }
    }

    fn global_name(&self, r: Ref) -> Option<(&str, &str)> {
        match &self.objs[r] {
            Obj::Global(m, n) => Some((m.as_str(), n.as_str())),
            _ => None,
        }
    }

    fn str_of(&self, r: Ref) -> Option<&str> {
        match &self.objs[r] {
            Obj::Value(PyValue::String(s)) => Some(s),
            _ => None,
        }
    }

    fn bytes_of(&self, r: Ref) -> Option<&[u8]> {
        match &self.objs[r] {
            Obj::Value(PyValue::Bytes(b)) => Some(b),
            Obj::Value(PyValue::String(s)) => Some(s.as_bytes()),
            _ => None,
        }
    }

    fn usizes(&self, r: Ref) -> Result<Vec<usize>> {
        match &self.objs[r] {
            Obj::Tuple(v) | Obj::List(v) => v
                .iter()
                .map(|&x| match &self.objs[x] {
                    Obj::Value(PyValue::I64(n)) if *n >= 0 => Ok(*n as usize),
                    _ => Err(anyhow!("numpy shape is not a tuple of sizes")),
                })
                .collect(),
            _ => bail!("numpy shape is not a tuple"),
        }
    }

    fn reduce(&self, func: Ref, args: &[Ref]) -> Result<Obj> {
        let Some((module, name)) = self.global_name(func) else {
            bail!("REDUCE on something that is not a Python callable");
        };
        let numpy = module.starts_with("numpy");
        Ok(match (module, name) {
            ("builtins" | "__builtin__", "set" | "frozenset" | "list" | "tuple") => {
                let items = match args.first().map(|&a| &self.objs[a]) {
                    None => Vec::new(),
                    Some(Obj::List(v) | Obj::Tuple(v) | Obj::Set(v) | Obj::FrozenSet(v)) => {
                        v.clone()
                    }
                    _ => bail!("{module}.{name}() of something not a sequence"),
                };
                match name {
                    "set" => Obj::Set(items),
                    "frozenset" => Obj::FrozenSet(items),
                    "list" => Obj::List(items),
                    _ => Obj::Tuple(items),
                }
            }
            ("builtins" | "__builtin__", "bytearray" | "bytes") | ("_codecs", "encode") => {
                let b = match args.first() {
                    None => Vec::new(),
                    Some(&a) => match &self.objs[a] {
                        // _codecs.encode(text, 'latin1'): Python 2 bytes in protocol 2
                        Obj::Value(PyValue::String(s)) => {
                            s.chars().map(|c| c as u32 as u8).collect()
                        }
                        Obj::Value(PyValue::Bytes(b)) => b.clone(),
                        _ => bail!("{module}.{name}() of an unsupported argument"),
                    },
                };
                Obj::Value(PyValue::Bytes(b))
            }
            ("collections", "OrderedDict") => Obj::Dict(Vec::new()),
            (_, "dtype") if numpy => {
                let descr = args
                    .first()
                    .and_then(|&a| self.str_of(a))
                    .ok_or_else(|| anyhow!("numpy.dtype() without a type string"))?
                    .to_string();
                Obj::Dtype {
                    descr,
                    big_endian: false,
                }
            }
            (_, "_reconstruct") if numpy => Obj::Array {
                shape: Vec::new(),
                dtype: None,
                fortran: false,
                data: Vec::new(),
            },
            (_, "scalar") if numpy => {
                let (Some(&dtype), Some(&data)) = (args.first(), args.get(1)) else {
                    bail!("numpy scalar without dtype and data");
                };
                let data = self
                    .bytes_of(data)
                    .ok_or_else(|| anyhow!("numpy scalar data is not bytes"))?
                    .to_vec();
                let mut vals = self.decode_array(dtype, &data)?;
                if vals.len() != 1 {
                    bail!("numpy scalar holds {} values", vals.len());
                }
                Obj::Value(vals.remove(0))
            }
            (_, "_frombuffer") if numpy => {
                let (Some(&buf), Some(&dtype), Some(&shape)) =
                    (args.first(), args.get(1), args.get(2))
                else {
                    bail!("numpy _frombuffer without buffer, dtype and shape");
                };
                let data = self
                    .bytes_of(buf)
                    .ok_or_else(|| {
                        anyhow!("numpy buffer is not bytes (out-of-band buffers are not supported)")
                    })?
                    .to_vec();
                let fortran = args
                    .get(3)
                    .and_then(|&o| self.str_of(o))
                    .is_some_and(|o| o == "F");
                Obj::Array {
                    shape: self.usizes(shape)?,
                    dtype: Some(dtype),
                    fortran,
                    data,
                }
            }
            _ => bail!(
                "the pickle holds a Python object of type {module}.{name}, which gfr does not read; \
                 save plain lists, dicts, floats and ints (e.g. numpy: `.tolist()`, `float(x)`)"
            ),
        })
    }

    fn build(&mut self, target: Ref, state: Ref) -> Result<()> {
        let kind = match &self.objs[target] {
            Obj::Dtype { .. } => 0,
            Obj::Array { .. } => 1,
            Obj::Dict(_) => 2,
            _ => 3,
        };
        match kind {
            0 => {
                // (version, byte order, …)
                let order = match &self.objs[state] {
                    Obj::Tuple(t) => t.get(1).and_then(|&o| self.str_of(o)).map(str::to_string),
                    _ => None,
                };
                if let Obj::Dtype { big_endian, .. } = &mut self.objs[target] {
                    *big_endian = order.as_deref() == Some(">");
                }
                Ok(())
            }
            1 => {
                // (version, shape, dtype, is_fortran, raw data)
                let Obj::Tuple(t) = &self.objs[state] else {
                    bail!("numpy array state is not a tuple");
                };
                let t = t.clone();
                if t.len() < 5 {
                    bail!("numpy array state has {} fields, expected 5", t.len());
                }
                let shape = self.usizes(t[1])?;
                let fortran = matches!(self.objs[t[3]], Obj::Value(PyValue::Bool(true)));
                let data = match self.bytes_of(t[4]) {
                    Some(b) => b.to_vec(),
                    None => bail!(
                        "numpy array of Python objects (dtype object): convert it with `.tolist()` before pickling"
                    ),
                };
                self.objs[target] = Obj::Array {
                    shape,
                    dtype: Some(t[2]),
                    fortran,
                    data,
                };
                Ok(())
            }
            2 => {
                // __dict__ update of a dict-like object
                let items = match &self.objs[state] {
                    Obj::Dict(d) => d.iter().flat_map(|&(k, v)| [k, v]).collect(),
                    _ => Vec::new(),
                };
                self.set_items(target, items)
            }
            _ => bail!("BUILD on an unsupported object"),
        }
    }

    /// The values of a numpy buffer of dtype `dtype`.
    fn decode_array(&self, dtype: Ref, data: &[u8]) -> Result<Vec<PyValue>> {
        let Obj::Dtype { descr, big_endian } = &self.objs[dtype] else {
            bail!("numpy dtype expected");
        };
        let (kind, size) = descr.split_at(descr.len().min(1));
        let size: usize = size.parse().map_err(|_| {
            anyhow!("numpy dtype `{descr}` is not supported: convert it with `.astype(float)`")
        })?;
        if !matches!(
            (kind, size),
            ("f", 2 | 4 | 8) | ("i" | "u", 1 | 2 | 4 | 8) | ("b", 1)
        ) {
            bail!("numpy dtype `{descr}` is not supported: convert it with `.astype(float)`");
        }
        if !data.len().is_multiple_of(size) {
            bail!(
                "numpy data of {} bytes is not a whole number of `{descr}` values",
                data.len()
            );
        }
        let be = *big_endian;
        Ok(data
            .chunks(size)
            .map(|c| {
                let mut b = [0u8; 8];
                if be {
                    for (i, &x) in c.iter().rev().enumerate() {
                        b[i] = x;
                    }
                } else {
                    b[..size].copy_from_slice(c);
                }
                let u = u64::from_le_bytes(b);
                match (kind, size) {
                    ("f", 8) => PyValue::F64(f64::from_bits(u)),
                    ("f", 4) => PyValue::F64(f32::from_bits(u as u32) as f64),
                    ("f", _) => PyValue::F64(half_to_f64(u as u16)),
                    ("b", _) => PyValue::Bool(u != 0),
                    ("u", 8) if u > i64::MAX as u64 => PyValue::F64(u as f64),
                    ("u", _) => PyValue::I64(u as i64),
                    _ => {
                        let shift = 64 - 8 * size as u32;
                        PyValue::I64(((u << shift) as i64) >> shift)
                    }
                }
            })
            .collect())
    }

    fn value(&self, r: Ref, depth: usize, budget: &mut usize) -> Result<PyValue> {
        if depth > MAX_DEPTH {
            bail!("nested deeper than {MAX_DEPTH} levels (or a self-reference)");
        }
        let spend = |budget: &mut usize, n: usize| -> Result<()> {
            *budget = budget.checked_sub(n).ok_or_else(|| {
                anyhow!("expands to far more values than its size allows (memo references)")
            })?;
            Ok(())
        };
        spend(budget, 1)?;
        let list = |items: &[Ref], budget: &mut usize| -> Result<Vec<PyValue>> {
            items
                .iter()
                .map(|&x| self.value(x, depth + 1, budget))
                .collect()
        };
        Ok(match &self.objs[r] {
            Obj::Value(v) => {
                if let PyValue::String(s) = v {
                    spend(budget, s.len() / 8)?;
                } else if let PyValue::Bytes(b) = v {
                    spend(budget, b.len() / 8)?;
                }
                v.clone()
            }
            Obj::List(v) => PyValue::List(list(v, budget)?),
            Obj::Tuple(v) => PyValue::Tuple(list(v, budget)?),
            Obj::Set(v) | Obj::FrozenSet(v) => {
                let items: BTreeSet<HashableValue> = list(v, budget)?
                    .into_iter()
                    .map(hashable)
                    .collect::<Result<_>>()?;
                if matches!(self.objs[r], Obj::Set(_)) {
                    PyValue::Set(items)
                } else {
                    PyValue::FrozenSet(items)
                }
            }
            Obj::Dict(d) => {
                let mut out = BTreeMap::new();
                for &(k, v) in d {
                    let k = hashable(self.value(k, depth + 1, budget)?)?;
                    out.insert(k, self.value(v, depth + 1, budget)?);
                }
                PyValue::Dict(out)
            }
            Obj::Global(m, n) => bail!(
                "the pickle holds the Python name {m}.{n} where a value belongs, which gfr does not read"
            ),
            Obj::Dtype { descr, .. } => bail!("the pickle holds a bare numpy dtype `{descr}`"),
            Obj::Array {
                shape,
                dtype,
                fortran,
                data,
            } => {
                let dtype =
                    dtype.ok_or_else(|| anyhow!("numpy array without its data (no BUILD)"))?;
                spend(budget, data.len() / 8)?;
                let flat = self.decode_array(dtype, data)?;
                let n: usize = shape.iter().product();
                if n != flat.len() {
                    bail!("numpy array of shape {shape:?} holds {} values", flat.len());
                }
                if shape.len() > MAX_DEPTH {
                    bail!("numpy array of {} dimensions", shape.len());
                }
                nest(&flat, shape, *fortran)
            }
        })
    }
}

/// A flat C- (or Fortran-) order buffer as nested lists of `shape` (a number for shape `()`).
fn nest(flat: &[PyValue], shape: &[usize], fortran: bool) -> PyValue {
    if shape.is_empty() {
        return flat.first().cloned().unwrap_or(PyValue::None);
    }
    // strides in elements
    let mut strides = vec![1usize; shape.len()];
    if fortran {
        for i in 1..shape.len() {
            strides[i] = strides[i - 1] * shape[i - 1];
        }
    } else {
        for i in (0..shape.len() - 1).rev() {
            strides[i] = strides[i + 1] * shape[i + 1];
        }
    }
    fn go(flat: &[PyValue], shape: &[usize], strides: &[usize], offset: usize) -> PyValue {
        if shape.is_empty() {
            return flat[offset].clone();
        }
        PyValue::List(
            (0..shape[0])
                .map(|i| go(flat, &shape[1..], &strides[1..], offset + i * strides[0]))
                .collect(),
        )
    }
    go(flat, shape, &strides, 0)
}

fn hashable(v: PyValue) -> Result<HashableValue> {
    Ok(match v {
        PyValue::None => HashableValue::None,
        PyValue::Bool(b) => HashableValue::Bool(b),
        PyValue::I64(i) => HashableValue::I64(i),
        PyValue::Int(i) => HashableValue::Int(i),
        PyValue::F64(f) => HashableValue::F64(f),
        PyValue::Bytes(b) => HashableValue::Bytes(b),
        PyValue::String(s) => HashableValue::String(s),
        PyValue::Tuple(t) => {
            HashableValue::Tuple(t.into_iter().map(hashable).collect::<Result<_>>()?)
        }
        PyValue::FrozenSet(s) => HashableValue::FrozenSet(s),
        PyValue::List(_) | PyValue::Dict(_) | PyValue::Set(_) => {
            bail!("a list, dict or set used as a dict key or set item")
        }
    })
}

/// Python's string escapes (`\n`, `\'`, `\xNN`, `\uNNNN`…), as STRING and UNICODE use them.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars().peekable();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |it: &mut std::iter::Peekable<std::str::Chars>, n: usize| {
            let h: String = it.by_ref().take(n).collect();
            u32::from_str_radix(&h, 16).ok().and_then(char::from_u32)
        };
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('0') => out.push('\0'),
            Some('x') => out.extend(hex(&mut it, 2)),
            Some('u') => out.extend(hex(&mut it, 4)),
            Some('U') => out.extend(hex(&mut it, 8)),
            Some(o) => out.push(o),
            None => out.push('\\'),
        }
    }
    out
}

fn half_to_f64(h: u16) -> f64 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f64;
    sign * match exp {
        0 => frac * 2f64.powi(-24),
        31 if frac == 0.0 => f64::INFINITY,
        31 => f64::NAN,
        e => (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_pickle::SerOptions;

    fn round_trip(v: &PyValue) -> PyValue {
        unpickle(&serde_pickle::value_to_vec(v, SerOptions::new()).unwrap()).unwrap()
    }

    #[test]
    fn reads_what_serde_pickle_writes() {
        let v = crate::data::pickle::dict([
            (
                "a",
                crate::data::pickle::float_list(&[1.5, -2.0, f64::INFINITY]),
            ),
            ("b", PyValue::I64(-123456789012)),
            ("c", PyValue::String("Long Square".into())),
            (
                "d",
                PyValue::Tuple(vec![PyValue::I64(20), PyValue::Bool(true), PyValue::None]),
            ),
        ]);
        assert_eq!(round_trip(&v), v);
    }

    /// `pickle.dumps([[]]*2 …)`-style memo bombs: each level refers twice to the previous one.
    #[test]
    fn memo_expansion_is_bounded() {
        // protocol 2: ] q0, then ( h(k) h(k) l q(k+1) … repeated
        let mut b = vec![0x80, 2, b']', b'q', 0];
        for k in 0..60u8 {
            b.extend([b'(', b'h', k, b'h', k, b'l', b'q', k + 1]);
        }
        b.push(b'.');
        let e = unpickle(&b).unwrap_err().to_string();
        assert!(e.contains("expands") || e.contains("nested"), "{e}");
    }

    #[test]
    fn deep_nesting_and_self_reference_are_errors() {
        let mut b = vec![0x80, 2];
        b.extend(std::iter::repeat_n(b']', 100_000));
        b.extend(std::iter::repeat_n(b'a', 99_999));
        b.push(b'.');
        let e = unpickle(&b).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
        // l = []; l.append(l)
        let b = [0x80, 2, b']', b'q', 0, b'h', 0, b'a', b'.'];
        let e = unpickle(&b).unwrap_err().to_string();
        assert!(e.contains("nested deeper"), "{e}");
    }

    #[test]
    fn numpy_scalars_and_arrays() {
        // pickle.dumps(numpy.float64(0.25), protocol=2)
        let mut b: Vec<u8> = vec![0x80, 2];
        b.extend(b"cnumpy.core.multiarray\nscalar\nq\x00cnumpy\ndtype\nq\x01X\x02\x00\x00\x00f8q\x02\x89\x88\x87q\x03Rq\x04(K\x03X\x01\x00\x00\x00<q\x05NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x06bC\x08");
        b.extend(0.25f64.to_le_bytes());
        b.extend(b"q\x07\x86q\x08Rq\x09.");
        assert_eq!(unpickle(&b).unwrap(), PyValue::F64(0.25));
        // numpy.array([[1, 2, 3], [4, 5, 6]], dtype='<i4') via _reconstruct
        let mut b: Vec<u8> = vec![0x80, 2];
        b.extend(b"cnumpy.core.multiarray\n_reconstruct\nq\x00cnumpy\nndarray\nq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05(K\x01K\x02K\x03\x86q\x06cnumpy\ndtype\nq\x07X\x02\x00\x00\x00i4q\x08\x89\x88\x87q\x09Rq\x0a(K\x03X\x01\x00\x00\x00<q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89C\x18");
        for x in 1i32..=6 {
            b.extend(x.to_le_bytes());
        }
        b.extend(b"q\x0dtq\x0eb.");
        let ints = |xs: &[i64]| PyValue::List(xs.iter().map(|&x| PyValue::I64(x)).collect());
        assert_eq!(
            unpickle(&b).unwrap(),
            PyValue::List(vec![ints(&[1, 2, 3]), ints(&[4, 5, 6])])
        );
    }

    #[test]
    fn other_objects_name_their_type() {
        let b = b"\x80\x02cdatetime\ndate\nq\x00C\x04\x07\xe9\x01\x01\x85R.";
        let e = unpickle(b).unwrap_err().to_string();
        assert!(e.contains("datetime.date") && e.contains("tolist"), "{e}");
    }
}
