//! The dependency closure of a set of Debian packages over the `Packages` indexes of a repository: what a partial
//! mirror carries. Pure: text in, a choice of stanzas and the reasons for each out.
//!
//! What it follows, as apt does on an empty system: `Pre-Depends` and `Depends` (and `Recommends` when asked),
//! alternatives (`a | b`: the first that some package satisfies, or every one that is satisfiable with
//! [`Options::all_alternatives`]), virtual packages through `Provides` (versioned provides for versioned
//! dependencies), version relations, architecture qualifiers (`:any`, `:native`, `:ARCH`) and `Multi-Arch`
//! (`foreign` satisfies a dependency of any architecture, `allowed` a `:any` one, `same` and none only their own
//! architecture; `all` packages count as the native one). A dependency some package already in the closure
//! satisfies takes nothing more. Among several real packages the newest version of the depender's architecture
//! is taken; among providers of a virtual package, an essential one, then the highest `Priority`, then the first
//! by name. `Conflicts` and `Breaks` are not followed: a mirror may carry what one system would not install.
//!
//! Refused, by name: a requested package nothing provides, a dependency nothing satisfies (all of them listed,
//! each with who needs it, unless [`Options::allow_missing`]), a relation the version already in the closure does
//! not meet while another version would (one version of a package per architecture), and a `Pre-Depends` loop
//! (dpkg cannot unpack any of its members first).

use super::version::{compare, Op};
use std::collections::{HashMap, VecDeque};
use std::fmt;

/// How a package's `Multi-Arch` lets it satisfy dependencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MultiArch {
    /// None or `no`.
    No,
    /// `same`.
    Same,
    /// `foreign`.
    Foreign,
    /// `allowed`.
    Allowed,
}

/// One stanza of a `Packages` index, borrowing the index's text.
#[derive(Clone, Debug)]
pub struct Pkg<'t> {
    /// `Package:`.
    pub name: &'t str,
    /// `Version:`.
    pub version: &'t str,
    /// `Architecture:`.
    pub arch: &'t str,
    /// `Multi-Arch:`.
    pub multi_arch: MultiArch,
    /// `Essential: yes`.
    pub essential: bool,
    /// `Priority:` as a rank, higher first (`required` 5 … `extra` 1, none 0).
    pub priority: u8,
    /// `Pre-Depends:`, `Depends:`, `Recommends:` and `Provides:` as written (empty when absent).
    pub pre_depends: &'t str,
    /// See `pre_depends`.
    pub depends: &'t str,
    /// See `pre_depends`.
    pub recommends: &'t str,
    /// See `pre_depends`.
    pub provides: &'t str,
    /// The whole stanza, without its blank separator line.
    pub stanza: &'t str,
    /// Which index it came from (the caller's number).
    pub index: usize,
    /// The line of the index the stanza starts on (1-based), for messages.
    pub line: usize,
}

/// Split a `Packages` index into its stanzas, appending each to `out`. `what` names the index in errors.
pub fn parse_index<'t>(
    text: &'t str,
    index: usize,
    what: &str,
    out: &mut Vec<Pkg<'t>>,
) -> Result<(), String> {
    let mut line = 1;
    let mut rest = text;
    while !rest.is_empty() {
        // Blank lines between stanzas.
        let trimmed = rest.trim_start_matches(['\n', '\r']);
        line += rest.len() - trimmed.len();
        rest = trimmed;
        if rest.is_empty() {
            break;
        }
        let end = rest
            .find("\n\n")
            .or_else(|| rest.find("\n\r\n"))
            .unwrap_or(rest.len());
        let stanza = rest[..end].trim_end_matches(['\n', '\r']);
        out.push(
            parse_stanza(stanza, index, line)
                .map_err(|e| format!("{what}: the stanza at line {line}: {e}"))?,
        );
        line += stanza.matches('\n').count();
        rest = &rest[end..];
    }
    Ok(())
}

fn parse_stanza(stanza: &str, index: usize, line: usize) -> Result<Pkg<'_>, String> {
    let mut p = Pkg {
        name: "",
        version: "",
        arch: "",
        multi_arch: MultiArch::No,
        essential: false,
        priority: 0,
        pre_depends: "",
        depends: "",
        recommends: "",
        provides: "",
        stanza,
        index,
        line,
    };
    let mut offset = 0;
    for l in stanza.split_inclusive('\n') {
        let start = offset;
        offset += l.len();
        if l.starts_with([' ', '\t']) || l.starts_with('#') {
            continue;
        }
        let Some((key, _)) = l.split_once(':') else {
            return Err(format!("line {:?} is not a field", l.trim_end()));
        };
        // The value with its continuation lines (dependency fields may be folded).
        let mut end = offset;
        for cont in stanza[offset..].split_inclusive('\n') {
            if !cont.starts_with([' ', '\t']) {
                break;
            }
            end += cont.len();
        }
        let value = stanza[start + key.len() + 1..end].trim();
        match key {
            "Package" => p.name = value,
            "Version" => p.version = value,
            "Architecture" => p.arch = value,
            "Multi-Arch" => {
                p.multi_arch = match value {
                    "same" => MultiArch::Same,
                    "foreign" => MultiArch::Foreign,
                    "allowed" => MultiArch::Allowed,
                    _ => MultiArch::No,
                }
            }
            "Essential" => p.essential = value == "yes",
            "Priority" => {
                p.priority = match value {
                    "required" => 5,
                    "important" => 4,
                    "standard" => 3,
                    "optional" => 2,
                    "extra" => 1,
                    _ => 0,
                }
            }
            "Pre-Depends" => p.pre_depends = value,
            "Depends" => p.depends = value,
            "Recommends" => p.recommends = value,
            "Provides" => p.provides = value,
            _ => {}
        }
    }
    for (field, v) in [
        ("Package", p.name),
        ("Version", p.version),
        ("Architecture", p.arch),
    ] {
        if v.is_empty() || v.contains(char::is_whitespace) {
            return Err(format!(
                "{} {field} field{}",
                if v.is_empty() { "no" } else { "a malformed" },
                if p.name.is_empty() {
                    String::new()
                } else {
                    format!(" (Package: {})", p.name)
                }
            ));
        }
    }
    Ok(p)
}

/// One term of a dependency: `name[:qualifier] [(op version)]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Atom<'t> {
    /// The package (or virtual package) name.
    pub name: &'t str,
    /// `any`, `native` or an architecture, after `:`.
    pub qualifier: Option<&'t str>,
    /// The version relation.
    pub relation: Option<(Op, &'t str)>,
}

impl fmt::Display for Atom<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)?;
        if let Some(q) = self.qualifier {
            write!(f, ":{q}")?;
        }
        if let Some((op, v)) = self.relation {
            write!(f, " ({} {v})", op.as_str())?;
        }
        Ok(())
    }
}

/// Parse one term (`libc6 (>= 2.36)`, `python3:any`); architecture lists and build profiles (`[amd64]`,
/// `<!nocheck>`, which binary indexes do not carry) are dropped.
pub fn parse_atom(text: &str) -> Result<Atom<'_>, String> {
    let text = match text.find(['[', '<']) {
        // `<` also starts `<<`/`<=` inside the parentheses: cut only outside them.
        Some(i) if !text[..i].contains('(') => text[..i].trim(),
        _ => text.trim(),
    };
    let (head, relation) = match text.split_once('(') {
        Some((head, rel)) => {
            let rel = rel
                .split_once(')')
                .map(|(r, _)| r.trim())
                .ok_or_else(|| format!("{text:?}: no closing parenthesis"))?;
            let (op, version) =
                Op::parse_prefix(rel).ok_or_else(|| format!("{text:?}: no relation in ({rel})"))?;
            let version = version.trim();
            if version.is_empty() || version.contains(char::is_whitespace) {
                return Err(format!("{text:?}: a malformed version in ({rel})"));
            }
            (head.trim(), Some((op, version)))
        }
        None => (text, None),
    };
    let (name, qualifier) = match head.split_once(':') {
        Some((n, q)) => (n, Some(q)),
        None => (head, None),
    };
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(format!("{text:?}: not a package name"));
    }
    Ok(Atom {
        name,
        qualifier,
        relation,
    })
}

/// Parse a dependency field: groups separated by `,`, alternatives within a group by `|`.
pub fn parse_relations(field: &str) -> Result<Vec<Vec<Atom<'_>>>, String> {
    field
        .split(',')
        .map(str::trim)
        .filter(|g| !g.is_empty())
        .map(|g| g.split('|').map(parse_atom).collect())
        .collect()
}

/// A package asked for: `name`, `name:arch`, `name=version` or `name (op version)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The name.
    pub name: String,
    /// An architecture, after `:`.
    pub arch: Option<String>,
    /// A version relation (`=` for `name=version`).
    pub relation: Option<(Op, String)>,
}

impl Request {
    /// Parse one request.
    pub fn parse(text: &str) -> Result<Request, String> {
        let text = text.trim();
        let (atom_text, pinned) = match text.split_once('=') {
            Some((n, v)) if !n.contains('(') => (n.trim(), Some(v.trim())),
            _ => (text, None),
        };
        let atom = parse_atom(atom_text).map_err(|e| format!("package {text:?}: {e}"))?;
        if pinned.is_some_and(|v| v.is_empty() || v.contains(char::is_whitespace)) {
            return Err(format!("package {text:?}: a malformed version"));
        }
        Ok(Request {
            name: atom.name.to_string(),
            arch: atom.qualifier.map(str::to_string),
            relation: pinned
                .map(|v| (Op::Eq, v.to_string()))
                .or_else(|| atom.relation.map(|(op, v)| (op, v.to_string()))),
        })
    }

    /// Parse a package list file: one request per line, `#` comments, and `dpkg --get-selections` output
    /// (`name[:arch]<TAB>install`; `deinstall`, `purge` and `hold` lines other than `install` are skipped).
    pub fn parse_list(text: &str) -> Result<Vec<Request>, String> {
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let spec = match fields.as_slice() {
                [name, "install"] => name.to_string(),
                [_, "deinstall" | "purge" | "hold"] => continue,
                _ => line.to_string(),
            };
            out.push(Request::parse(&spec).map_err(|e| format!("line {}: {e}", n + 1))?);
        }
        Ok(out)
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)?;
        if let Some(a) = &self.arch {
            write!(f, ":{a}")?;
        }
        match &self.relation {
            Some((Op::Eq, v)) => write!(f, "={v}"),
            Some((op, v)) => write!(f, " ({} {v})", op.as_str()),
            None => Ok(()),
        }
    }
}

/// Choices of the closure.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// The architecture `all` packages count as, and requests without one take (`amd64`).
    pub native: String,
    /// Follow `Recommends` too.
    pub recommends: bool,
    /// Take every satisfiable alternative of `a | b`, not the first.
    pub all_alternatives: bool,
    /// Add every `Essential: yes` package (for an empty target system).
    pub essential: bool,
    /// Carry on past dependencies nothing satisfies (they are still listed).
    pub allow_missing: bool,
}

/// Why a package is in the closure.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Asked for (the request as written).
    Requested(String),
    /// `Essential: yes`, with `essential=yes`.
    Essential,
    /// A dependency of another package of the closure: its index in [`Closure::packages`], the field
    /// (`Depends`, …) and the group as written.
    Dependency {
        /// The depending package (an index into `Closure::packages`).
        of: usize,
        /// `Pre-Depends`, `Depends` or `Recommends`.
        field: &'static str,
        /// The dependency, alternatives and all.
        relation: String,
    },
}

/// A dependency nothing satisfies: the group as written and who needs it (`name version (arch)` and the field,
/// or `requested`).
pub use crate::ingest::partial::ReportMissing as Missing;

/// The result: packages (indexes into the universe given) with their reasons, in the order they were taken.
#[derive(Debug, Default)]
pub struct Closure {
    /// `(package index, why)`, the requests first.
    pub packages: Vec<(usize, Reason)>,
    /// Dependencies nothing satisfies (only with `allow_missing`; otherwise an error lists them).
    pub missing: Vec<Missing>,
    /// Recommendations nothing satisfies (never an error, as for apt).
    pub unmet_recommends: Vec<Missing>,
}

/// The packages of some indexes, looked up by name and by what they provide.
pub struct Universe<'t> {
    /// Every stanza.
    pub pkgs: Vec<Pkg<'t>>,
    by_name: HashMap<&'t str, Vec<usize>>,
    /// Provided name → (provider, provided version).
    provided: HashMap<&'t str, Vec<(usize, Option<&'t str>)>>,
}

impl<'t> Universe<'t> {
    /// Index `pkgs`. A malformed `Provides` is an error naming the package.
    pub fn new(pkgs: Vec<Pkg<'t>>) -> Result<Universe<'t>, String> {
        let mut by_name: HashMap<&str, Vec<usize>> = HashMap::with_capacity(pkgs.len());
        let mut provided: HashMap<&str, Vec<(usize, Option<&str>)>> = HashMap::new();
        for (i, p) in pkgs.iter().enumerate() {
            by_name.entry(p.name).or_default().push(i);
            if p.provides.is_empty() {
                continue;
            }
            for group in parse_relations(p.provides)
                .map_err(|e| format!("{}: Provides: {e}", describe(p)))?
            {
                for a in group {
                    let version = match a.relation {
                        Some((Op::Eq, v)) => Some(v),
                        Some(_) => {
                            return Err(format!(
                                "{}: Provides: {a}: only = is allowed there",
                                describe(p)
                            ))
                        }
                        None => None,
                    };
                    provided.entry(a.name).or_default().push((i, version));
                }
            }
        }
        Ok(Universe {
            pkgs,
            by_name,
            provided,
        })
    }
}

/// `name version (arch)`, for messages.
pub fn describe(p: &Pkg<'_>) -> String {
    format!("{} {} ({})", p.name, p.version, p.arch)
}

/// Why the closure could not be made.
#[derive(Debug, PartialEq, Eq)]
pub enum ClosureError {
    /// Dependencies (or requests) nothing satisfies.
    Missing(Vec<Missing>),
    /// Two relations on one package that no single version meets.
    Conflict(String),
    /// A `Pre-Depends` loop.
    Loop(Vec<String>),
    /// A malformed field of a package taken.
    Malformed(String),
}

impl fmt::Display for ClosureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClosureError::Missing(m) => crate::ingest::partial::write_missing(f, m),
            ClosureError::Conflict(s) => write!(f, "conflicting constraints: {s}"),
            ClosureError::Loop(members) => write!(
                f,
                "a Pre-Depends loop dpkg cannot unpack: {}",
                members.join(" -> ")
            ),
            ClosureError::Malformed(s) => f.write_str(s),
        }
    }
}

struct Resolver<'u, 't> {
    u: &'u Universe<'t>,
    opts: &'u Options,
    /// (name, architecture) → the package of the closure; `all` packages under the native architecture.
    chosen: HashMap<(&'t str, &'t str), usize>,
    /// Universe index → position in `out.packages`.
    position: HashMap<usize, usize>,
    /// Pre-Depends edges (universe indexes), for the loop check.
    pre_edges: Vec<(usize, usize)>,
    out: Closure,
    queue: VecDeque<usize>,
}

impl<'t> Resolver<'_, 't> {
    /// The architecture a package's own unqualified dependencies are resolved in.
    fn context_arch<'a>(&'a self, p: &'a Pkg<'t>) -> &'a str {
        if p.arch == "all" {
            &self.opts.native
        } else {
            p.arch
        }
    }

    fn key(&self, p: &Pkg<'t>) -> (&'t str, &'t str) {
        // `all` packages live under the native architecture (the universe borrows the text, so the native
        // architecture's name is taken from a package when one exists; "all" stands in otherwise).
        (p.name, if p.arch == "all" { "all" } else { p.arch })
    }

    /// Whether package `q` may satisfy a dependency with `qualifier`, of a package resolved in `ctx`.
    fn arch_fits(&self, q: &Pkg<'_>, qualifier: Option<&str>, ctx: &str) -> bool {
        let native_or_all = |a: &str| a == "all" || a == self.opts.native;
        match qualifier {
            None => q.arch == "all" || q.arch == ctx || q.multi_arch == MultiArch::Foreign,
            Some("any") => {
                q.arch == "all"
                    || q.arch == ctx
                    || matches!(q.multi_arch, MultiArch::Foreign | MultiArch::Allowed)
            }
            Some("native") => native_or_all(q.arch),
            Some(arch) => q.arch == arch || q.arch == "all",
        }
    }

    /// Whether `q` (a real package named as the atom, or a provider of it) satisfies `atom` in `ctx`.
    fn satisfies(&self, q: usize, atom: &Atom<'_>, ctx: &str) -> bool {
        let p = &self.u.pkgs[q];
        if !self.arch_fits(p, atom.qualifier, ctx) {
            return false;
        }
        if p.name == atom.name && atom.relation.is_none_or(|(op, v)| op.holds(p.version, v)) {
            return true;
        }
        self.u.provided.get(atom.name).is_some_and(|ps| {
            ps.iter().any(|&(i, pv)| {
                i == q
                    && match (atom.relation, pv) {
                        (None, _) => true,
                        (Some((op, v)), Some(pv)) => op.holds(pv, v),
                        (Some(_), None) => false,
                    }
            })
        })
    }

    /// A package of the closure that satisfies `atom`, if any.
    fn already(&self, atom: &Atom<'_>, ctx: &str) -> Option<usize> {
        let named = self.u.by_name.get(atom.name).into_iter().flatten();
        let providers = self
            .u
            .provided
            .get(atom.name)
            .into_iter()
            .flatten()
            .map(|(i, _)| i);
        named
            .chain(providers)
            .copied()
            .find(|&q| self.position.contains_key(&q) && self.satisfies(q, atom, ctx))
    }

    /// The best package to take for `atom`: the newest real one (of `ctx`'s architecture first), else the
    /// preferred provider. `Err` when the only satisfiers are versions of packages the closure holds another
    /// version of.
    fn best(&self, atom: &Atom<'_>, ctx: &str) -> Result<Option<usize>, String> {
        let mut blocked = None;
        let free = |q: usize, blocked: &mut Option<usize>| -> bool {
            match self.chosen.get(&self.key(&self.u.pkgs[q])) {
                Some(&held) if held != q => {
                    *blocked = Some(held);
                    false
                }
                _ => true,
            }
        };
        let mut real: Vec<usize> = self
            .u
            .by_name
            .get(atom.name)
            .into_iter()
            .flatten()
            .copied()
            .filter(|&q| self.satisfies(q, atom, ctx))
            .collect();
        real.sort_by(|&a, &b| {
            let (pa, pb) = (&self.u.pkgs[a], &self.u.pkgs[b]);
            let own = |p: &Pkg<'_>| p.arch == ctx || p.arch == "all";
            own(pb)
                .cmp(&own(pa))
                .then_with(|| compare(pb.version, pa.version))
        });
        if let Some(&q) = real.iter().find(|&&q| free(q, &mut blocked)) {
            return Ok(Some(q));
        }
        let mut providers: Vec<usize> = self
            .u
            .provided
            .get(atom.name)
            .into_iter()
            .flatten()
            .map(|&(i, _)| i)
            .filter(|&q| self.u.pkgs[q].name != atom.name && self.satisfies(q, atom, ctx))
            .collect();
        providers.sort_by(|&a, &b| {
            let (pa, pb) = (&self.u.pkgs[a], &self.u.pkgs[b]);
            pb.essential
                .cmp(&pa.essential)
                .then(pb.priority.cmp(&pa.priority))
                .then(pa.name.cmp(pb.name))
                .then_with(|| compare(pb.version, pa.version))
        });
        providers.dedup();
        if let Some(&q) = providers.iter().find(|&&q| free(q, &mut blocked)) {
            return Ok(Some(q));
        }
        match blocked {
            Some(held) => Err(format!(
                "{atom} is not met by {}, which the closure already holds ({})",
                describe(&self.u.pkgs[held]),
                self.why(held)
            )),
            None => Ok(None),
        }
    }

    /// Why universe package `q` (in the closure) is there, in words.
    fn why(&self, q: usize) -> String {
        match self.position.get(&q).map(|&i| &self.out.packages[i].1) {
            Some(Reason::Requested(r)) => format!("requested as {r}"),
            Some(Reason::Essential) => "essential".into(),
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
        let key = self.key(&self.u.pkgs[q]);
        self.chosen.insert(key, q);
        self.queue.push_back(q);
    }

    fn request(&mut self, r: &Request) -> Result<(), ClosureError> {
        let atom = Atom {
            name: &r.name,
            qualifier: r.arch.as_deref(),
            relation: r.relation.as_ref().map(|(op, v)| (*op, v.as_str())),
        };
        let ctx = r.arch.clone().unwrap_or_else(|| self.opts.native.clone());
        if self.already(&atom, &ctx).is_some() {
            return Ok(());
        }
        match self.best(&atom, &ctx).map_err(ClosureError::Conflict)? {
            Some(q) => self.take(q, Reason::Requested(r.to_string())),
            None => self.out.missing.push(Missing {
                relation: r.to_string(),
                needed_by: "requested".into(),
            }),
        }
        Ok(())
    }

    fn dependencies(&mut self, p: usize) -> Result<(), ClosureError> {
        let pkg = self.u.pkgs[p].clone();
        let ctx = self.context_arch(&pkg).to_string();
        let mut fields = vec![("Pre-Depends", pkg.pre_depends), ("Depends", pkg.depends)];
        if self.opts.recommends {
            fields.push(("Recommends", pkg.recommends));
        }
        for (field, text) in fields {
            let groups = parse_relations(text).map_err(|e| {
                ClosureError::Malformed(format!("{}: {field}: {e}", describe(&pkg)))
            })?;
            for group in groups {
                let relation = group
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>()
                    .join(" | ");
                let held: Vec<usize> = group.iter().filter_map(|a| self.already(a, &ctx)).collect();
                if let (Some(&h), false) = (held.first(), self.opts.all_alternatives) {
                    if field == "Pre-Depends" {
                        self.pre_edges.push((p, h));
                    }
                    continue;
                }
                let mut taken = held.len();
                let mut conflict = None;
                for atom in &group {
                    if self.opts.all_alternatives && self.already(atom, &ctx).is_some() {
                        continue;
                    }
                    match self.best(atom, &ctx) {
                        Ok(Some(q)) => {
                            if field == "Pre-Depends" {
                                self.pre_edges.push((p, q));
                            }
                            let of = self.position[&p];
                            self.take(
                                q,
                                Reason::Dependency {
                                    of,
                                    field,
                                    relation: relation.clone(),
                                },
                            );
                            taken += 1;
                            if !self.opts.all_alternatives {
                                break;
                            }
                        }
                        Ok(None) => {}
                        Err(e) => conflict = conflict.or(Some(e)),
                    }
                }
                if taken > 0 {
                    continue;
                }
                if let Some(c) = conflict {
                    return Err(ClosureError::Conflict(format!(
                        "{} {field} {relation}: {c}",
                        describe(&pkg)
                    )));
                }
                let missing = Missing {
                    relation,
                    needed_by: format!("{} {field}", describe(&pkg)),
                };
                if field == "Recommends" {
                    self.out.unmet_recommends.push(missing);
                } else {
                    self.out.missing.push(missing);
                }
            }
        }
        Ok(())
    }

    /// A cycle among the Pre-Depends edges, if any.
    fn pre_depends_loop(&self) -> Option<Vec<String>> {
        crate::ingest::partial::find_cycle(&self.pre_edges)
            .map(|c| c.into_iter().map(|x| describe(&self.u.pkgs[x])).collect())
    }
}

/// The closure of `requests` over `u`.
pub fn resolve(
    u: &Universe<'_>,
    requests: &[Request],
    opts: &Options,
) -> Result<Closure, ClosureError> {
    let mut r = Resolver {
        u,
        opts,
        chosen: HashMap::new(),
        position: HashMap::new(),
        pre_edges: Vec::new(),
        out: Closure::default(),
        queue: VecDeque::new(),
    };
    for req in requests {
        r.request(req)?;
    }
    if opts.essential {
        let mut essential: Vec<usize> = (0..u.pkgs.len())
            .filter(|&i| {
                let p = &u.pkgs[i];
                p.essential && (p.arch == "all" || p.arch == opts.native)
            })
            .collect();
        // The newest version of each.
        essential.sort_by(|&a, &b| {
            u.pkgs[a]
                .name
                .cmp(u.pkgs[b].name)
                .then_with(|| compare(u.pkgs[b].version, u.pkgs[a].version))
        });
        essential.dedup_by(|a, b| u.pkgs[*a].name == u.pkgs[*b].name);
        for q in essential {
            if !r.chosen.contains_key(&r.key(&u.pkgs[q])) {
                r.take(q, Reason::Essential);
            }
        }
    }
    while let Some(p) = r.queue.pop_front() {
        r.dependencies(p)?;
    }
    if let Some(members) = r.pre_depends_loop() {
        return Err(ClosureError::Loop(members));
    }
    if !r.out.missing.is_empty() && !opts.allow_missing {
        return Err(ClosureError::Missing(r.out.missing));
    }
    Ok(r.out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn universe(text: &str) -> Universe<'_> {
        let mut pkgs = Vec::new();
        parse_index(text, 0, "Packages", &mut pkgs).unwrap();
        Universe::new(pkgs).unwrap()
    }

    fn names(u: &Universe<'_>, c: &Closure) -> Vec<String> {
        let mut v: Vec<String> = c
            .packages
            .iter()
            .map(|(i, _)| format!("{}={}", u.pkgs[*i].name, u.pkgs[*i].version))
            .collect();
        v.sort();
        v
    }

    fn opts() -> Options {
        Options {
            native: "amd64".into(),
            ..Options::default()
        }
    }

    fn reqs(list: &str) -> Vec<Request> {
        Request::parse_list(list).unwrap()
    }

    const REPO: &str = "\
Package: app
Version: 1.0
Architecture: amd64
Pre-Depends: init-system-helpers (>= 1.5)
Depends: libc6 (>= 2.36), libfoo1 | libbar1, mail-transport-agent, python3:any
Recommends: app-doc
Priority: optional

Package: libc6
Version: 2.36-9
Architecture: amd64
Multi-Arch: same
Depends: libgcc-s1
Priority: optional

Package: libc6
Version: 2.35-1
Architecture: amd64
Multi-Arch: same

Package: libgcc-s1
Version: 12.2.0-14
Architecture: amd64
Multi-Arch: same
Depends: libc6 (>= 2.35)

Package: init-system-helpers
Version: 1.65
Architecture: all
Multi-Arch: foreign

Package: libbar1
Version: 3
Architecture: amd64

Package: exim4
Version: 4.96
Architecture: amd64
Provides: mail-transport-agent
Priority: standard
Depends: libc6

Package: postfix
Version: 3.7
Architecture: amd64
Provides: mail-transport-agent
Priority: optional

Package: python3
Version: 3.11.2-1
Architecture: amd64
Multi-Arch: allowed

Package: app-doc
Version: 1.0
Architecture: all
Description: docs
 with a long
 description

Package: base-files
Version: 12.4
Architecture: amd64
Essential: yes
";

    #[test]
    fn follows_depends_alternatives_and_virtuals() {
        let u = universe(REPO);
        let c = resolve(&u, &reqs("app"), &opts()).unwrap();
        assert_eq!(
            names(&u, &c),
            [
                "app=1.0",
                "exim4=4.96",
                "init-system-helpers=1.65",
                "libbar1=3",
                "libc6=2.36-9",
                "libgcc-s1=12.2.0-14",
                "python3=3.11.2-1"
            ]
        );
        // The loop libc6 <-> libgcc-s1 (Depends) is fine; the reasons say who pulled each in.
        let why = |name: &str| {
            let (_, r) = c
                .packages
                .iter()
                .find(|(i, _)| u.pkgs[*i].name == name)
                .unwrap();
            r.clone()
        };
        assert_eq!(why("app"), Reason::Requested("app".into()));
        match why("exim4") {
            Reason::Dependency {
                of,
                field,
                relation,
            } => {
                assert_eq!(u.pkgs[c.packages[of].0].name, "app");
                assert_eq!(field, "Depends");
                assert_eq!(relation, "mail-transport-agent");
            }
            other => panic!("{other:?}"),
        }
        assert!(c.missing.is_empty() && c.unmet_recommends.is_empty());

        let with = Options {
            recommends: true,
            all_alternatives: true,
            essential: true,
            ..opts()
        };
        let c = resolve(&u, &reqs("app"), &with).unwrap();
        let n = names(&u, &c);
        assert!(n.contains(&"app-doc=1.0".to_string()), "{n:?}");
        assert!(n.contains(&"base-files=12.4".to_string()), "{n:?}");
        // libfoo1 exists nowhere; libbar1 is the one alternative taken either way.
        assert!(n.contains(&"libbar1=3".to_string()), "{n:?}");
    }

    #[test]
    fn versions_and_pins() {
        let u = universe(REPO);
        let c = resolve(&u, &reqs("libc6=2.35-1"), &opts()).unwrap();
        assert_eq!(names(&u, &c), ["libc6=2.35-1"]);
        let c = resolve(&u, &reqs("libc6 (<< 2.36)"), &opts()).unwrap();
        assert_eq!(names(&u, &c), ["libc6=2.35-1"]);
        // Pinned to 2.35 while libgcc-s1 needs >= 2.35: met. app needs >= 2.36: a conflict, named.
        let err = resolve(&u, &reqs("libc6=2.35-1\napp"), &opts()).unwrap_err();
        match &err {
            ClosureError::Conflict(s) => {
                assert!(s.contains("libc6 (>= 2.36)"), "{s}");
                assert!(s.contains("requested as libc6=2.35-1"), "{s}");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("conflicting constraints"));
    }

    #[test]
    fn missing_dependencies_are_listed_with_who_needs_them() {
        let text = "Package: a\nVersion: 1\nArchitecture: amd64\nDepends: b (>= 2), c | d\n\n\
                    Package: b\nVersion: 1\nArchitecture: amd64\n";
        let u = universe(text);
        let err = resolve(&u, &reqs("a\nnope"), &opts()).unwrap_err();
        let ClosureError::Missing(m) = &err else {
            panic!("{err:?}")
        };
        assert_eq!(
            m,
            &[
                Missing {
                    relation: "nope".into(),
                    needed_by: "requested".into()
                },
                Missing {
                    relation: "b (>= 2)".into(),
                    needed_by: "a 1 (amd64) Depends".into()
                },
                Missing {
                    relation: "c | d".into(),
                    needed_by: "a 1 (amd64) Depends".into()
                },
            ]
        );
        assert!(err.to_string().contains("allow-missing=yes"));
        let c = resolve(
            &u,
            &reqs("a"),
            &Options {
                allow_missing: true,
                ..opts()
            },
        )
        .unwrap();
        assert_eq!(names(&u, &c), ["a=1"]);
        assert_eq!(c.missing.len(), 2);
    }

    #[test]
    fn architectures_and_multi_arch() {
        let text = "\
Package: tool
Version: 1
Architecture: arm64
Depends: libx, helper, perl:any

Package: libx
Version: 1
Architecture: amd64
Multi-Arch: same

Package: libx
Version: 1
Architecture: arm64
Multi-Arch: same

Package: helper
Version: 1
Architecture: amd64
Multi-Arch: foreign

Package: perl
Version: 5.36
Architecture: amd64
Multi-Arch: allowed
";
        let u = universe(text);
        let c = resolve(&u, &reqs("tool:arm64"), &opts()).unwrap();
        let got: Vec<String> = c
            .packages
            .iter()
            .map(|(i, _)| format!("{}:{}", u.pkgs[*i].name, u.pkgs[*i].arch))
            .collect();
        assert_eq!(
            got,
            ["tool:arm64", "libx:arm64", "helper:amd64", "perl:amd64"]
        );
        // Without an arm64 request, tool is not installable natively.
        let err = resolve(&u, &reqs("tool"), &opts()).unwrap_err();
        assert!(matches!(err, ClosureError::Missing(_)), "{err:?}");
    }

    #[test]
    fn pre_depends_loops_are_refused() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\nPre-Depends: b\n\n\
                    Package: b\nVersion: 1\nArchitecture: all\nPre-Depends: a\n";
        let u = universe(text);
        let err = resolve(&u, &reqs("a"), &opts()).unwrap_err();
        assert_eq!(
            err,
            ClosureError::Loop(vec![
                "a 1 (all)".into(),
                "b 1 (all)".into(),
                "a 1 (all)".into()
            ])
        );
    }

    #[test]
    fn malformed_input_is_named() {
        let mut pkgs = Vec::new();
        let err = parse_index(
            "Package: a\nVersion: 1\n\nPackage: b\n",
            0,
            "X/Packages",
            &mut pkgs,
        )
        .unwrap_err();
        assert!(err.contains("X/Packages: the stanza at line 1"), "{err}");
        assert!(err.contains("no Architecture field (Package: a)"), "{err}");
        let err = parse_index(
            "Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\nno colon here\n",
            0,
            "P",
            &mut pkgs,
        )
        .unwrap_err();
        assert!(err.contains("line 5"), "{err}");
        let u = universe("Package: a\nVersion: 1\nArchitecture: all\nDepends: b (>= )\n");
        let err = resolve(&u, &reqs("a"), &opts()).unwrap_err();
        assert!(
            matches!(&err, ClosureError::Malformed(s) if s.contains("a 1 (all): Depends")),
            "{err:?}"
        );
        assert!(Request::parse("a (~ 1)").is_err());
        assert!(Request::parse("a=").is_err());
        assert_eq!(
            Request::parse_list(
                "# selections\ncurl\tinstall\nvim\tdeinstall\njq=1.6-2 # pinned\nnginx (>= 1.22)\n"
            )
            .unwrap()
            .iter()
            .map(|r| r.to_string())
            .collect::<Vec<_>>(),
            ["curl", "jq=1.6-2", "nginx (>= 1.22)"]
        );
    }

    #[test]
    fn folded_fields_and_stanza_text() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\nDepends: b,\n c\n\n\n\
                    Package: b\nVersion: 1\nArchitecture: all\n\nPackage: c\nVersion: 1\nArchitecture: all";
        let u = universe(text);
        assert_eq!(u.pkgs.len(), 3);
        assert_eq!(u.pkgs[1].line, 8);
        assert_eq!(
            u.pkgs[2].stanza,
            "Package: c\nVersion: 1\nArchitecture: all"
        );
        let c = resolve(&u, &reqs("a"), &opts()).unwrap();
        assert_eq!(names(&u, &c), ["a=1", "b=1", "c=1"]);
    }
}
