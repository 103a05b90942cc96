//! The dependency closure of rpm packages, as dnf would install them on an empty system: pure — packages (as
//! primary.xml describes them) and requests go in, the chosen packages with the reason for each come out.
//!
//! It follows `Requires` (and `Recommends` on request), through everything that can satisfy one: a package of
//! that name, a `Provides` whose range overlaps (rpm's rule), a file a package owns (from primary.xml, or
//! filelists.xml for the rest), and rich dependencies — `and`, `or` (the first alternative that can be met,
//! or every one with `alternatives=all`), `if`/`unless` (with `else`), `with` and `without`. Conditions are
//! settled once nothing else is left to take, so `(a if b)` takes `a` only when the closure holds `b`.
//!
//! One version per name and architecture, the newest that meets every requirement on that name: when a later
//! requirement rules out the version already taken (`libfoo >= 1.2` took 2.0, then `libfoo < 2.0`), the
//! requirement is learned and the closure starts again, choosing 1.3 from the start. Packages are of the
//! native architecture or `noarch`; others only when a request names their architecture (`glibc.i686`).
//! A `Requires(pre)` loop is refused (rpm cannot order it); missing dependencies are listed with who needs them.

use super::rpmver::{overlap, range_text, Evr, Flags, Range};
use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;

/// A dependency entry of primary.xml: a name (or a rich dependency, in parentheses) and a range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dep {
    /// The name, a file path, or a rich dependency (`(a or b)`).
    pub name: String,
    /// The range, for a plain name.
    pub range: Range,
    /// `pre="1"`: `Requires(pre)`.
    pub pre: bool,
}

impl fmt::Display for Dep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.name, range_text(&self.range))
    }
}

/// One package of primary.xml.
#[derive(Clone, Debug, Default)]
pub struct RpmPkg {
    /// `<name>`.
    pub name: String,
    /// `<arch>`.
    pub arch: String,
    /// `<version epoch ver rel>`.
    pub evr: Evr,
    /// `<rpm:provides>`.
    pub provides: Vec<Dep>,
    /// `<rpm:requires>`.
    pub requires: Vec<Dep>,
    /// `<rpm:recommends>`.
    pub recommends: Vec<Dep>,
    /// The files primary.xml lists for it (its binaries and configuration).
    pub files: Vec<String>,
    /// `<location href>`.
    pub href: String,
    /// `<checksum>`: type and hex (the pkgid filelists.xml and other.xml key by).
    pub checksum: (String, String),
    /// `<size package>`.
    pub size: u64,
    /// Where its `<package>` element is in the primary metadata, to write it again verbatim.
    pub span: (usize, usize),
}

/// `name-[epoch:]version-release.arch`, for messages.
pub fn describe(p: &RpmPkg) -> String {
    format!("{}-{}.{}", p.name, p.evr, p.arch)
}

/// A dependency expression: a plain one, or rpm's boolean (rich) operators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rich {
    /// `name`, `name >= 1.2`, `/usr/bin/sh`.
    Atom(String, Range),
    /// `(a and b …)`
    And(Vec<Rich>),
    /// `(a or b …)`
    Or(Vec<Rich>),
    /// `(a if b [else c])`
    If(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    /// `(a unless b [else c])`
    Unless(Box<Rich>, Box<Rich>, Option<Box<Rich>>),
    /// `(a with b …)`: one package meeting all.
    With(Vec<Rich>),
    /// `(a without b)`: a package meeting a but not b.
    Without(Box<Rich>, Box<Rich>),
}

/// Parse a dependency: a rich one when it starts with `(`, else `name [op evr]`.
pub fn parse_rich(text: &str) -> Result<Rich, String> {
    let tokens = tokenize(text);
    let mut at = 0;
    let rich = parse_operand(&tokens, &mut at, text)?;
    if at != tokens.len() {
        return Err(format!(
            "{text:?}: unexpected {:?} after the dependency",
            tokens[at]
        ));
    }
    Ok(rich)
}

fn tokenize(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        if c == '(' || c == ')' || c.is_whitespace() {
            if let Some(s) = start.take() {
                out.push(&text[s..i]);
            }
            if !c.is_whitespace() {
                out.push(&text[i..i + 1]);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        out.push(&text[s..]);
    }
    out
}

fn parse_operand(t: &[&str], at: &mut usize, text: &str) -> Result<Rich, String> {
    let Some(&first) = t.get(*at) else {
        return Err(format!("{text:?} ends where a dependency should be"));
    };
    if first == ")" {
        return Err(format!("{text:?}: an empty or unbalanced ()"));
    }
    if first != "(" {
        *at += 1;
        let range = match t.get(*at).and_then(|s| Flags::parse_prefix(s)) {
            Some((flags, "")) => {
                let evr = t
                    .get(*at + 1)
                    .filter(|v| **v != "(" && **v != ")")
                    .ok_or_else(|| format!("{text:?}: {first} {} wants a version", t[*at]))?;
                *at += 2;
                Some((
                    flags,
                    Evr::parse(evr).map_err(|e| format!("{text:?}: {e}"))?,
                ))
            }
            _ => None,
        };
        return Ok(Rich::Atom(first.to_string(), range));
    }
    *at += 1;
    let head = parse_operand(t, at, text)?;
    let op = match t.get(*at) {
        Some(&")") => {
            *at += 1;
            return Ok(head);
        }
        Some(op) => *op,
        None => return Err(format!("{text:?}: a ( is never closed")),
    };
    let mut operands = vec![head];
    let mut otherwise = None;
    loop {
        match t.get(*at) {
            Some(&")") => {
                *at += 1;
                break;
            }
            Some(&o) if o == op => {
                *at += 1;
                operands.push(parse_operand(t, at, text)?);
            }
            Some(&"else") if matches!(op, "if" | "unless") && otherwise.is_none() => {
                *at += 1;
                otherwise = Some(Box::new(parse_operand(t, at, text)?));
            }
            Some(o) => {
                return Err(format!(
                    "{text:?}: {o:?} where {op:?} or ) should be (operators do not mix without parentheses)"
                ))
            }
            None => return Err(format!("{text:?}: a ( is never closed")),
        }
    }
    let two = |mut v: Vec<Rich>| -> Result<(Box<Rich>, Box<Rich>), String> {
        if v.len() != 2 {
            return Err(format!("{text:?}: {op} takes two operands"));
        }
        let b = v.pop().expect("two");
        Ok((Box::new(v.pop().expect("two")), Box::new(b)))
    };
    Ok(match op {
        "and" => Rich::And(operands),
        "or" => Rich::Or(operands),
        "with" => Rich::With(operands),
        "without" => {
            let (a, b) = two(operands)?;
            Rich::Without(a, b)
        }
        "if" => {
            let (a, b) = two(operands)?;
            Rich::If(a, b, otherwise)
        }
        "unless" => {
            let (a, b) = two(operands)?;
            Rich::Unless(a, b, otherwise)
        }
        other => {
            return Err(format!(
                "{text:?}: unknown operator {other:?} (and, or, if, else, unless, with, without)"
            ))
        }
    })
}

/// A package asked for: `name`, `name.arch`, `name OP [epoch:]version[-release]` (`libfoo < 2`,
/// `libfoo=1.3-1`), a provided name (`config(x)`) or a file (`/usr/bin/sh`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The request as written.
    pub text: String,
    /// The name (or file).
    pub name: String,
    /// The range.
    pub range: Range,
}

impl Request {
    /// Parse one request.
    pub fn parse(text: &str) -> Result<Request, String> {
        let text = text.trim();
        let (name, range) = match text.find(['<', '>', '=']) {
            Some(i) => {
                let (flags, v) = Flags::parse_prefix(&text[i..]).expect("an operator is there");
                let evr = Evr::parse(v.trim()).map_err(|e| format!("package {text:?}: {e}"))?;
                (text[..i].trim(), Some((flags, evr)))
            }
            None => (text, None),
        };
        if name.is_empty() || name.contains(char::is_whitespace) || name.contains(['(', ')', ',']) {
            return Err(format!("package {text:?}: not NAME[.ARCH] [OP VERSION]"));
        }
        Ok(Request {
            text: text.to_string(),
            name: name.to_string(),
            range,
        })
    }

    /// Parse a package list file: one request per line, `#` comments; `rpm -qa --qf '%{NAME}\n'` output works.
    pub fn parse_list(text: &str) -> Result<Vec<Request>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                out.push(Request::parse(line).map_err(|e| format!("line {}: {e}", n + 1))?);
            }
        }
        Ok(out)
    }
}

/// Choices of the closure.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The architecture (`x86_64`); `noarch` packages go with it.
    pub arch: String,
    /// Follow `Recommends` too (dnf's `install_weak_deps`).
    pub recommends: bool,
    /// Take every alternative of `(a or b)` that can be met, not the first.
    pub all_alternatives: bool,
    /// Carry on past dependencies nothing satisfies (they are still listed).
    pub allow_missing: bool,
}

/// Why a package is in the closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Asked for (the request as written).
    Requested(String),
    /// A dependency of another package of the closure.
    Dependency {
        /// The depending package (an index into `Closure::packages`).
        of: usize,
        /// `Requires`, `Requires(pre)` or `Recommends`.
        field: &'static str,
        /// The dependency as written.
        relation: String,
    },
}

/// A dependency nothing satisfies: the group as written and who needs it (`name version (arch)` and the field,
/// or `requested`).
pub use crate::ingest::partial::ReportMissing as Missing;

/// The result: packages (indexes into the universe) with their reasons, in the order they were taken.
#[derive(Debug, Default)]
pub struct Closure {
    /// `(package index, why)`, the requests first.
    pub packages: Vec<(usize, Reason)>,
    /// Dependencies nothing satisfies (only with `allow_missing`; otherwise an error lists them).
    pub missing: Vec<Missing>,
    /// Recommendations nothing satisfies (never an error).
    pub unmet_recommends: Vec<Missing>,
}

/// Why the closure could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum ClosureError {
    /// Dependencies (or requests) nothing satisfies.
    Missing(Vec<Missing>),
    /// Requirements on one package that no single version meets.
    Conflict(String),
    /// A `Requires(pre)` loop.
    Loop(Vec<String>),
    /// A malformed dependency of a package taken.
    Malformed(String),
}

impl fmt::Display for ClosureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClosureError::Missing(m) => crate::ingest::partial::write_missing(f, m),
            ClosureError::Conflict(s) => write!(f, "conflicting requirements: {s}"),
            ClosureError::Loop(members) => write!(
                f,
                "a Requires(pre) loop rpm cannot order: {}",
                members.join(" -> ")
            ),
            ClosureError::Malformed(s) => f.write_str(s),
        }
    }
}

/// The packages of a repository, looked up by name, by what they provide, and by the files they own.
pub struct Universe {
    /// Every package.
    pub pkgs: Vec<RpmPkg>,
    by_name: HashMap<String, Vec<usize>>,
    /// Provided name → (provider, index of the provide in its list).
    provided: HashMap<String, Vec<(usize, usize)>>,
    files: HashMap<String, Vec<usize>>,
}

impl Universe {
    /// Index `pkgs`; `more_files` adds owners of files primary.xml does not list (from filelists.xml).
    pub fn new(pkgs: Vec<RpmPkg>, more_files: HashMap<String, Vec<usize>>) -> Universe {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::with_capacity(pkgs.len());
        let mut provided: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut files = more_files;
        for (i, p) in pkgs.iter().enumerate() {
            by_name.entry(p.name.clone()).or_default().push(i);
            for (k, d) in p.provides.iter().enumerate() {
                provided.entry(d.name.clone()).or_default().push((i, k));
            }
            for f in &p.files {
                files.entry(f.clone()).or_default().push(i);
            }
        }
        for owners in files.values_mut() {
            owners.sort_unstable();
            owners.dedup();
        }
        Universe {
            pkgs,
            by_name,
            provided,
            files,
        }
    }

    /// Every file path some package requires (plainly or inside a rich dependency) that primary.xml's file
    /// lists do not cover: what filelists.xml must be searched for.
    pub fn unowned_file_requirements(pkgs: &[RpmPkg]) -> HashSet<String> {
        let owned: HashSet<&str> = pkgs
            .iter()
            .flat_map(|p| p.files.iter().map(String::as_str))
            .collect();
        let provided: HashSet<&str> = pkgs
            .iter()
            .flat_map(|p| p.provides.iter().map(|d| d.name.as_str()))
            .collect();
        let mut out = HashSet::new();
        for d in pkgs
            .iter()
            .flat_map(|p| p.requires.iter().chain(&p.recommends))
        {
            let names: Vec<&str> = if d.name.starts_with('(') {
                tokenize(&d.name)
                    .into_iter()
                    .filter(|t| t.starts_with('/'))
                    .collect()
            } else {
                vec![d.name.as_str()]
            };
            for n in names {
                if n.starts_with('/') && !owned.contains(n) && !provided.contains(n) {
                    out.insert(n.to_string());
                }
            }
        }
        out
    }

    /// Whether package `q` provides `name` in a range overlapping `range` (or owns the file `name`).
    fn provides(&self, q: usize, name: &str, range: &Range) -> bool {
        let p = &self.pkgs[q];
        if p.name == name && overlap(&Some((Flags::Eq, p.evr.clone())), range) {
            return true;
        }
        if p.provides
            .iter()
            .any(|d| d.name == name && overlap(&d.range, range))
        {
            return true;
        }
        name.starts_with('/') && self.files.get(name).is_some_and(|o| o.contains(&q))
    }

    /// Every package that might satisfy `name` (to be filtered by [`Universe::provides`]).
    fn named(&self, name: &str) -> impl Iterator<Item = usize> + '_ {
        let by_name = self.by_name.get(name).into_iter().flatten().copied();
        let provided = self
            .provided
            .get(name)
            .into_iter()
            .flatten()
            .map(|&(i, _)| i);
        let files = self.files.get(name).into_iter().flatten().copied();
        by_name.chain(provided).chain(files)
    }
}

/// Why an attempt stopped: a fatal error, or a requirement to learn before starting again.
enum Stop {
    Fatal(ClosureError),
    /// A package name, a range every version taken of it must meet, and who asked for it.
    Learn(String, Range, String),
}

impl From<ClosureError> for Stop {
    fn from(e: ClosureError) -> Stop {
        Stop::Fatal(e)
    }
}

struct Resolver<'u> {
    u: &'u Universe,
    opts: &'u Options,
    /// Ranges learned from earlier attempts, by package name, with who asked for each.
    learned: &'u HashMap<String, Vec<(Range, String)>>,
    /// Architectures requests named (`glibc.i686`): allowed besides the native one and noarch.
    extra_arches: HashSet<String>,
    /// (name, architecture) → the package of the closure; noarch packages count as native.
    chosen: HashMap<(String, String), usize>,
    /// Universe index → position in `out.packages`.
    position: HashMap<usize, usize>,
    /// Requires(pre) edges (universe indexes), for the loop check.
    pre_edges: Vec<(usize, usize)>,
    /// Conditional requirements waiting for the closure to settle: (package, field, expression, relation).
    pending: Vec<(usize, &'static str, Rich, String)>,
    out: Closure,
    queue: VecDeque<usize>,
}

/// What the requirement being met is, for reasons and messages.
struct Ctx<'a> {
    of: usize,
    field: &'static str,
    relation: &'a str,
}

impl Resolver<'_> {
    fn key(&self, q: usize) -> (String, String) {
        let p = &self.u.pkgs[q];
        let arch = if p.arch == "noarch" {
            &self.opts.arch
        } else {
            &p.arch
        };
        (p.name.clone(), arch.clone())
    }

    fn arch_fits(&self, q: usize) -> bool {
        let a = self.u.pkgs[q].arch.as_str();
        a == self.opts.arch || a == "noarch" || self.extra_arches.contains(a)
    }

    /// Whether `q` meets every range learned for its name.
    fn learned_fits(&self, q: usize) -> bool {
        let p = &self.u.pkgs[q];
        self.learned.get(&p.name).is_none_or(|rs| {
            rs.iter()
                .all(|(r, _)| overlap(&Some((Flags::Eq, p.evr.clone())), r))
        })
    }

    /// A package of the closure that provides `name` in `range`.
    fn held(&self, name: &str, range: &Range) -> Option<usize> {
        self.u
            .named(name)
            .find(|&q| self.position.contains_key(&q) && self.u.provides(q, name, range))
    }

    /// Whether the closure as it stands meets `e` (taking nothing).
    fn holds(&self, e: &Rich) -> bool {
        match e {
            Rich::Atom(n, r) => self.held(n, r).is_some(),
            Rich::And(v) => v.iter().all(|x| self.holds(x)),
            Rich::Or(v) => v.iter().any(|x| self.holds(x)),
            Rich::If(a, c, otherwise) => {
                if self.holds(c) {
                    self.holds(a)
                } else {
                    otherwise.as_ref().is_none_or(|o| self.holds(o))
                }
            }
            Rich::Unless(a, c, otherwise) => {
                if !self.holds(c) {
                    self.holds(a)
                } else {
                    otherwise.as_ref().is_none_or(|o| self.holds(o))
                }
            }
            Rich::With(_) | Rich::Without(..) => {
                self.position.keys().any(|&q| self.single_fits(q, e))
            }
        }
    }

    /// Whether the one package `q` meets `e` (for `with` and `without`).
    fn single_fits(&self, q: usize, e: &Rich) -> bool {
        match e {
            Rich::Atom(n, r) => self.u.provides(q, n, r),
            Rich::With(v) | Rich::And(v) => v.iter().all(|x| self.single_fits(q, x)),
            Rich::Or(v) => v.iter().any(|x| self.single_fits(q, x)),
            Rich::Without(a, b) => self.single_fits(q, a) && !self.single_fits(q, b),
            Rich::If(..) | Rich::Unless(..) => false,
        }
    }

    /// The names a package meeting `e` alone must provide one of (to find candidates for `with`/`without`).
    fn first_atom(e: &Rich) -> Option<(&str, &Range)> {
        match e {
            Rich::Atom(n, r) => Some((n, r)),
            Rich::With(v) | Rich::And(v) => v.first().and_then(Self::first_atom),
            Rich::Without(a, _) => Self::first_atom(a),
            _ => None,
        }
    }

    /// Candidates for a requirement met by one package: arch-compatible, meeting `fits`, ranked the way dnf
    /// ranks them (a package of that very name first, then the native architecture, the newest, the name).
    /// `Err((name, holder))` when the only ones are other versions of packages the closure holds.
    fn best(
        &self,
        name: &str,
        fits: impl Fn(usize) -> bool,
    ) -> Result<Option<usize>, (String, usize)> {
        let mut c: Vec<usize> = self
            .u
            .named(name)
            .filter(|&q| self.arch_fits(q) && fits(q))
            .collect();
        c.sort_unstable();
        c.dedup();
        c.sort_by(|&a, &b| {
            let (pa, pb) = (&self.u.pkgs[a], &self.u.pkgs[b]);
            (pb.name == name)
                .cmp(&(pa.name == name))
                .then((pb.arch == self.opts.arch).cmp(&(pa.arch == self.opts.arch)))
                .then(pa.name.cmp(&pb.name))
                .then_with(|| pb.evr.rank(&pa.evr))
        });
        let mut blocked = None;
        for q in c {
            match self.chosen.get(&self.key(q)) {
                Some(&h) if h != q => blocked = blocked.or(Some((self.u.pkgs[q].name.clone(), h))),
                _ if self.learned_fits(q) => return Ok(Some(q)),
                _ => {}
            }
        }
        match blocked {
            Some(b) => Err(b),
            None => Ok(None),
        }
    }

    fn why(&self, q: usize) -> String {
        match self.position.get(&q).map(|&i| &self.out.packages[i].1) {
            Some(Reason::Requested(r)) => format!("requested as {r}"),
            Some(Reason::Dependency {
                of,
                field,
                relation,
            }) => format!(
                "{field} of {}: {relation}",
                describe(&self.u.pkgs[self.out.packages[*of].0])
            ),
            None => "not taken".into(),
        }
    }

    fn take(&mut self, q: usize, reason: Reason) {
        if self.position.contains_key(&q) {
            return;
        }
        self.position.insert(q, self.out.packages.len());
        self.out.packages.push((q, reason));
        self.chosen.insert(self.key(q), q);
        self.queue.push_back(q);
    }

    /// Meet a plain requirement: held already, or the best candidate taken. `Ok(false)`: nothing meets it.
    fn atom(&mut self, name: &str, range: &Range, ctx: &Ctx<'_>) -> Result<bool, Stop> {
        if let Some(h) = self.held(name, range) {
            if ctx.field == "Requires(pre)" {
                self.pre_edges.push((self.out.packages[ctx.of].0, h));
            }
            return Ok(true);
        }
        match self.best(name, |q| self.u.provides(q, name, range)) {
            Ok(Some(q)) => {
                self.take_for(q, ctx);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err((pkg, holder)) => {
                let who = self.who(ctx);
                if pkg == name && range.is_some() {
                    // A requirement on the package itself that the version taken does not meet: learn it.
                    return Err(Stop::Learn(pkg, range.clone(), who));
                }
                Err(Stop::Fatal(ClosureError::Conflict(format!(
                    "{who} needs {name}{}, which only other versions of {pkg} provide; the closure holds {} ({})",
                    range_text(range),
                    describe(&self.u.pkgs[holder]),
                    self.why(holder)
                ))))
            }
        }
    }

    fn who(&self, ctx: &Ctx<'_>) -> String {
        if ctx.field == "requested" {
            format!("the request {}", ctx.relation)
        } else {
            format!(
                "{} ({} {})",
                describe(&self.u.pkgs[self.out.packages[ctx.of].0]),
                ctx.field,
                ctx.relation
            )
        }
    }

    fn take_for(&mut self, q: usize, ctx: &Ctx<'_>) {
        let reason = if ctx.field == "requested" {
            Reason::Requested(ctx.relation.to_string())
        } else {
            if ctx.field == "Requires(pre)" {
                self.pre_edges.push((self.out.packages[ctx.of].0, q));
            }
            Reason::Dependency {
                of: ctx.of,
                field: ctx.field,
                relation: ctx.relation.to_string(),
            }
        };
        self.take(q, reason);
    }

    /// Meet `e`; `Ok(false)` when nothing can. Conditions are deferred until the closure settles.
    fn meet(&mut self, e: &Rich, ctx: &Ctx<'_>) -> Result<bool, Stop> {
        match e {
            Rich::Atom(n, r) => self.atom(n, r, ctx),
            Rich::And(v) => {
                let mut all = true;
                for x in v {
                    all &= self.meet(x, ctx)?;
                }
                Ok(all)
            }
            Rich::Or(v) => {
                if !self.opts.all_alternatives && v.iter().any(|x| self.holds(x)) {
                    return Ok(true);
                }
                let mut any = false;
                for x in v {
                    if self.meet(x, ctx)? {
                        any = true;
                        if !self.opts.all_alternatives {
                            break;
                        }
                    }
                }
                Ok(any)
            }
            Rich::If(..) | Rich::Unless(..) => {
                let of = self.out.packages[ctx.of].0;
                self.pending
                    .push((of, ctx.field, e.clone(), ctx.relation.to_string()));
                Ok(true)
            }
            Rich::With(_) | Rich::Without(..) => {
                if self.holds(e) {
                    return Ok(true);
                }
                let Some((name, _)) = Self::first_atom(e) else {
                    return Ok(false);
                };
                match self.best(name, |q| self.single_fits(q, e)) {
                    Ok(Some(q)) => {
                        self.take_for(q, ctx);
                        Ok(true)
                    }
                    Ok(None) | Err(_) => Ok(false),
                }
            }
        }
    }

    fn request(&mut self, r: &Request) -> Result<(), Stop> {
        // `name.arch`, unless the whole is a name.
        let (name, arch) = match r.name.rsplit_once('.') {
            Some((n, a))
                if self.u.named(&r.name).next().is_none()
                    && self
                        .u
                        .by_name
                        .get(n)
                        .is_some_and(|v| v.iter().any(|&q| self.u.pkgs[q].arch == a)) =>
            {
                (n, Some(a))
            }
            _ => (r.name.as_str(), None),
        };
        if let Some(a) = arch {
            self.extra_arches.insert(a.to_string());
        }
        let fits = |q: usize| {
            arch.is_none_or(|a| self.u.pkgs[q].arch == a) && self.u.provides(q, name, &r.range)
        };
        if self
            .u
            .named(name)
            .any(|q| self.position.contains_key(&q) && fits(q))
        {
            return Ok(());
        }
        match self.best(name, fits) {
            Ok(Some(q)) => self.take(q, Reason::Requested(r.text.clone())),
            Ok(None) => {
                let learned = self.learned.get(name).filter(|_| {
                    self.u
                        .named(name)
                        .any(|q| self.arch_fits(q) && self.u.provides(q, name, &r.range))
                });
                if let Some(rs) = learned {
                    return Err(Stop::Fatal(ClosureError::Conflict(format!(
                        "the request {} and {} meet in no version of {name}",
                        r.text,
                        rs.iter()
                            .map(|(range, who)| format!("{who}: {name}{}", range_text(range)))
                            .collect::<Vec<_>>()
                            .join("; ")
                    ))));
                }
                self.out.missing.push(Missing {
                    relation: r.text.clone(),
                    needed_by: "requested".into(),
                });
            }
            Err((pkg, holder)) => {
                if pkg == name && r.range.is_some() {
                    return Err(Stop::Learn(
                        pkg,
                        r.range.clone(),
                        format!("the request {}", r.text),
                    ));
                }
                return Err(Stop::Fatal(ClosureError::Conflict(format!(
                    "the request {} is met only by other versions of {pkg} than the closure's {} ({})",
                    r.text,
                    describe(&self.u.pkgs[holder]),
                    self.why(holder)
                ))));
            }
        }
        Ok(())
    }

    fn dependencies(&mut self, p: usize) -> Result<(), Stop> {
        let pkg = &self.u.pkgs[p];
        let mut deps: Vec<(&'static str, Dep)> = pkg
            .requires
            .iter()
            .map(|d| (if d.pre { "Requires(pre)" } else { "Requires" }, d.clone()))
            .collect();
        if self.opts.recommends {
            deps.extend(pkg.recommends.iter().map(|d| ("Recommends", d.clone())));
        }
        let of = self.position[&p];
        for (field, d) in deps {
            if d.name.starts_with("rpmlib(") {
                continue;
            }
            let relation = d.to_string();
            let e = if d.name.starts_with('(') {
                parse_rich(&d.name).map_err(|e| {
                    ClosureError::Malformed(format!("{}: {field}: {e}", describe(&self.u.pkgs[p])))
                })?
            } else {
                Rich::Atom(d.name.clone(), d.range.clone())
            };
            let ctx = Ctx {
                of,
                field,
                relation: &relation,
            };
            if !self.meet(&e, &ctx)? {
                self.unmet(p, field, relation.clone());
            }
        }
        Ok(())
    }

    fn unmet(&mut self, p: usize, field: &'static str, relation: String) {
        let missing = Missing {
            relation,
            needed_by: format!("{} {field}", describe(&self.u.pkgs[p])),
        };
        if field == "Recommends" {
            self.out.unmet_recommends.push(missing);
        } else {
            self.out.missing.push(missing);
        }
    }

    fn drain(&mut self) -> Result<(), Stop> {
        while let Some(p) = self.queue.pop_front() {
            self.dependencies(p)?;
        }
        Ok(())
    }

    /// Settle the conditional requirements: those whose condition the closure meets first (repeating while
    /// that takes more), then the `else` branches and `unless` of those whose condition it does not.
    fn settle(&mut self) -> Result<(), Stop> {
        loop {
            self.drain()?;
            let mut progressed = false;
            for pass in [true, false] {
                let pending = std::mem::take(&mut self.pending);
                for (p, field, e, relation) in pending {
                    let branch = match &e {
                        Rich::If(a, c, otherwise) => {
                            if self.holds(c) {
                                Some(Some(a.as_ref()))
                            } else if pass {
                                None
                            } else {
                                Some(otherwise.as_deref())
                            }
                        }
                        Rich::Unless(a, c, otherwise) => {
                            if self.holds(c) {
                                if pass {
                                    None
                                } else {
                                    Some(otherwise.as_deref())
                                }
                            } else if pass {
                                None
                            } else {
                                Some(Some(a.as_ref()))
                            }
                        }
                        _ => unreachable!("only conditions wait"),
                    };
                    match branch {
                        None => self.pending.push((p, field, e, relation)),
                        Some(None) => {}
                        Some(Some(x)) => {
                            let ctx = Ctx {
                                of: self.position[&p],
                                field,
                                relation: &relation,
                            };
                            let before = self.out.packages.len();
                            if !self.meet(x, &ctx)? {
                                self.unmet(p, field, relation.clone());
                            }
                            progressed |= self.out.packages.len() > before;
                        }
                    }
                }
                if progressed {
                    break;
                }
            }
            if !progressed && self.queue.is_empty() {
                return Ok(());
            }
        }
    }
}

/// How many times the closure may start again to learn a requirement.
const MAX_LEARNED: usize = 256;

/// The closure of `requests` over `u`.
pub fn resolve(
    u: &Universe,
    requests: &[Request],
    opts: &Options,
) -> Result<Closure, ClosureError> {
    let mut learned: HashMap<String, Vec<(Range, String)>> = HashMap::new();
    loop {
        let mut r = Resolver {
            u,
            opts,
            learned: &learned,
            extra_arches: HashSet::new(),
            chosen: HashMap::new(),
            position: HashMap::new(),
            pre_edges: Vec::new(),
            pending: Vec::new(),
            out: Closure::default(),
            queue: VecDeque::new(),
        };
        let attempt = (|| {
            for req in requests {
                r.request(req)?;
            }
            r.settle()
        })();
        match attempt {
            Ok(()) => {
                if let Some(c) = crate::ingest::partial::find_cycle(&r.pre_edges) {
                    return Err(ClosureError::Loop(
                        c.into_iter().map(|q| describe(&u.pkgs[q])).collect(),
                    ));
                }
                if !r.out.missing.is_empty() && !opts.allow_missing {
                    return Err(ClosureError::Missing(r.out.missing));
                }
                return Ok(r.out);
            }
            Err(Stop::Fatal(e)) => return Err(e),
            Err(Stop::Learn(name, range, who)) => {
                let known = learned.entry(name.clone()).or_default();
                let all: Vec<String> = known
                    .iter()
                    .chain(std::iter::once(&(range.clone(), who.clone())))
                    .map(|(r, w)| format!("{w}: {name}{}", range_text(r)))
                    .collect();
                let possible = u.by_name.get(&name).into_iter().flatten().any(|&q| {
                    let have = Some((Flags::Eq, u.pkgs[q].evr.clone()));
                    overlap(&have, &range) && known.iter().all(|(r, _)| overlap(&have, r))
                });
                if !possible || known.iter().any(|(r, _)| *r == range) {
                    return Err(ClosureError::Conflict(format!(
                        "no version of {name} meets every requirement on it: {}",
                        all.join("; ")
                    )));
                }
                known.push((range, who));
                if learned.values().map(Vec::len).sum::<usize>() > MAX_LEARNED {
                    return Err(ClosureError::Conflict(format!(
                        "more than {MAX_LEARNED} version requirements had to be learned; the last: {}",
                        all.join("; ")
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(text: &str) -> Dep {
        if text.starts_with('(') {
            return Dep {
                name: text.into(),
                range: None,
                pre: false,
            };
        }
        let w: Vec<&str> = text.split_whitespace().collect();
        Dep {
            name: w[0].into(),
            range: w.get(1).map(|op| {
                (
                    Flags::parse_prefix(op).unwrap().0,
                    Evr::parse(w[2]).unwrap(),
                )
            }),
            pre: false,
        }
    }

    /// `name evr arch; requires…; provides…; files…` (lists separated by `,`; `pre:` marks Requires(pre)).
    fn pkg(spec: &str) -> RpmPkg {
        let parts: Vec<&str> = spec.split(';').map(str::trim).collect();
        let head: Vec<&str> = parts[0].split_whitespace().collect();
        let list = |i: usize| -> Vec<&str> {
            parts
                .get(i)
                .map(|s| {
                    s.split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .collect()
                })
                .unwrap_or_default()
        };
        let evr = Evr::parse(head[1]).unwrap();
        let mut provides: Vec<Dep> = list(2).into_iter().map(dep).collect();
        provides.push(Dep {
            name: head[0].into(),
            range: Some((Flags::Eq, evr.clone())),
            pre: false,
        });
        RpmPkg {
            name: head[0].into(),
            arch: head.get(2).unwrap_or(&"noarch").to_string(),
            evr,
            requires: list(1)
                .into_iter()
                .map(|d| match d.strip_prefix("pre:") {
                    Some(d) => Dep {
                        pre: true,
                        ..dep(d)
                    },
                    None => dep(d),
                })
                .collect(),
            provides,
            files: list(3).into_iter().map(str::to_string).collect(),
            href: format!("Packages/{}.rpm", head[0]),
            ..RpmPkg::default()
        }
    }

    fn universe(specs: &[&str]) -> Universe {
        Universe::new(specs.iter().map(|s| pkg(s)).collect(), HashMap::new())
    }

    fn names(u: &Universe, c: &Closure) -> Vec<String> {
        let mut v: Vec<String> = c
            .packages
            .iter()
            .map(|(i, _)| format!("{}-{}", u.pkgs[*i].name, u.pkgs[*i].evr))
            .collect();
        v.sort();
        v
    }

    fn opts() -> Options {
        Options {
            arch: "x86_64".into(),
            ..Options::default()
        }
    }

    fn reqs(list: &str) -> Vec<Request> {
        Request::parse_list(list).unwrap()
    }

    const REPO: &[&str] = &[
        "app 2.0-1 x86_64; libfoo >= 1.2, libfoo < 2.0, config-tool, /usr/bin/fhelper, /usr/share/fdata/table.dat, (pya or pyb), (extra-a if with-extras), pre:setup-pkg, rpmlib(PayloadIsZstd) <= 5.4.18-1",
        "libfoo 1.0-1; libbar",
        "libfoo 1.3-1; libbar",
        "libfoo 2.0-1; libbar",
        "libbar 1.0-1",
        "ctool 1.0-1; ; config-tool = 1.0",
        "fhelper 1.0-1; ; ; /usr/bin/fhelper",
        "fdata 1.0-1; ; ; /usr/share/fdata/table.dat",
        "pya 1.0-1",
        "pyb 1.0-1",
        "setup-pkg 1.0-1",
        "extra-a 1.0-1",
        "with-extras 1.0-1",
        "unrelated 1.0-1; libbar",
        "app 2.0-1 i686; libfoo",
    ];

    #[test]
    fn the_closure_follows_every_kind_of_requirement() {
        let u = universe(REPO);
        let c = resolve(&u, &reqs("app"), &opts()).unwrap();
        assert_eq!(
            names(&u, &c),
            [
                "app-2.0-1",
                "ctool-1.0-1",
                "fdata-1.0-1",
                "fhelper-1.0-1",
                "libbar-1.0-1",
                "libfoo-1.3-1",
                "pya-1.0-1",
                "setup-pkg-1.0-1"
            ],
            "libfoo 1.3: the newest that meets both ranges; pya: the first alternative; no extra-a"
        );
        assert_eq!(u.pkgs[c.packages[0].0].arch, "x86_64", "the native app");
        // Reasons: the first is the request; libbar is there for libfoo.
        assert_eq!(c.packages[0].1, Reason::Requested("app".into()));
        let libbar = c
            .packages
            .iter()
            .find(|(q, _)| u.pkgs[*q].name == "libbar")
            .unwrap();
        let Reason::Dependency {
            of,
            field,
            relation,
        } = &libbar.1
        else {
            panic!()
        };
        assert_eq!(u.pkgs[c.packages[*of].0].name, "libfoo");
        assert_eq!((*field, relation.as_str()), ("Requires", "libbar"));

        // The condition is met once with-extras is asked for; every alternative with alternatives=all.
        let c = resolve(&u, &reqs("app\nwith-extras"), &opts()).unwrap();
        assert!(names(&u, &c).contains(&"extra-a-1.0-1".to_string()));
        let all = Options {
            all_alternatives: true,
            ..opts()
        };
        let c = resolve(&u, &reqs("app"), &all).unwrap();
        assert!(names(&u, &c).contains(&"pyb-1.0-1".to_string()));
        // An architecture named in the request.
        let c = resolve(&u, &reqs("app.i686"), &opts()).unwrap();
        assert_eq!(u.pkgs[c.packages[0].0].arch, "i686");
        assert!(names(&u, &c).contains(&"libfoo-2.0-1".to_string()));
    }

    #[test]
    fn requests_by_version_provide_and_file() {
        let u = universe(REPO);
        for (r, want) in [
            ("libfoo", "libfoo-2.0-1"),
            ("libfoo < 2", "libfoo-1.3-1"),
            ("libfoo=1.0", "libfoo-1.0-1"),
            ("config-tool", "ctool-1.0-1"),
            ("/usr/share/fdata/table.dat", "fdata-1.0-1"),
        ] {
            let c = resolve(&u, &reqs(r), &opts()).unwrap();
            assert_eq!(names(&u, &c)[..1].len(), 1);
            assert!(
                names(&u, &c).contains(&want.to_string()),
                "{r}: {:?}",
                names(&u, &c)
            );
        }
        // A request for an old version and a dependency on a newer one meet in no version.
        let err = resolve(&u, &reqs("libfoo = 1.0\napp"), &opts()).unwrap_err();
        assert!(
            matches!(&err, ClosureError::Conflict(s) if s.contains("libfoo")),
            "{err}"
        );
    }

    #[test]
    fn missing_requirements_are_named_with_who_needs_them() {
        let u = universe(&["broken 1-1; nonexistent >= 3, (a or b)", "c 1-1; broken"]);
        let err = resolve(&u, &reqs("c\nghost"), &opts()).unwrap_err();
        let ClosureError::Missing(m) = &err else {
            panic!("{err}")
        };
        let text = err.to_string();
        assert_eq!(m.len(), 3, "{text}");
        assert!(text.contains("ghost (needed by requested)"), "{text}");
        assert!(
            text.contains("nonexistent >= 3 (needed by broken-1-1.noarch Requires)"),
            "{text}"
        );
        assert!(text.contains("(a or b)"), "{text}");
        let lenient = Options {
            allow_missing: true,
            ..opts()
        };
        let c = resolve(&u, &reqs("c"), &lenient).unwrap();
        assert_eq!(names(&u, &c), ["broken-1-1", "c-1-1"]);
        assert_eq!(c.missing.len(), 2);
    }

    #[test]
    fn pre_loops_and_malformed_rich_dependencies_are_refused() {
        let u = universe(&[
            "a 1-1; pre:b",
            "b 1-1; pre:a",
            "c 1-1; a, d",
            "d 1-1; e",
            "e 1-1; d",
        ]);
        let err = resolve(&u, &reqs("c"), &opts()).unwrap_err();
        assert!(
            matches!(&err, ClosureError::Loop(m) if m.len() == 3),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains("a-1-1.noarch -> b-1-1.noarch -> a-1-1.noarch"),
            "{err}"
        );
        // A plain Requires loop is fine.
        assert_eq!(resolve(&u, &reqs("d"), &opts()).unwrap().packages.len(), 2);
        let u = universe(&["x 1-1; (a or b and c)"]);
        let err = resolve(&u, &reqs("x"), &opts()).unwrap_err();
        assert!(
            matches!(&err, ClosureError::Malformed(s) if s.contains("x-1-1.noarch") && s.contains("do not mix")),
            "{err}"
        );
    }

    #[test]
    fn rich_dependencies_parse() {
        assert_eq!(
            parse_rich("(a >= 1.2 or (b with c) or d)").unwrap(),
            Rich::Or(vec![
                Rich::Atom("a".into(), Some((Flags::Ge, Evr::parse("1.2").unwrap()))),
                Rich::With(vec![
                    Rich::Atom("b".into(), None),
                    Rich::Atom("c".into(), None)
                ]),
                Rich::Atom("d".into(), None),
            ])
        );
        assert!(matches!(
            parse_rich("(a if b else c)").unwrap(),
            Rich::If(_, _, Some(_))
        ));
        assert!(matches!(
            parse_rich("(a unless b)").unwrap(),
            Rich::Unless(_, _, None)
        ));
        for bad in [
            "(a or",
            "(a or b))",
            "(a xor b)",
            "(a if b if c)",
            "(a >=)",
            "()",
        ] {
            assert!(parse_rich(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn with_without_and_unless() {
        let u = universe(&[
            "x 1-1; (lib with lib-devel), (tool without tool-old), (fallback unless preferred)",
            "both 1-1; ; lib, lib-devel",
            "only 1-1; ; lib",
            "t-old 1-1; ; tool, tool-old",
            "t-new 1-1; ; tool",
            "fallback 1-1",
            "preferred 1-1",
        ]);
        let c = resolve(&u, &reqs("x"), &opts()).unwrap();
        assert_eq!(
            names(&u, &c),
            ["both-1-1", "fallback-1-1", "t-new-1-1", "x-1-1"]
        );
        let c = resolve(&u, &reqs("x\npreferred"), &opts()).unwrap();
        assert!(!names(&u, &c).contains(&"fallback-1-1".to_string()));
    }
}
