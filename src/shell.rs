//! Command lines regate prints for people to paste into a shell (the 403's fix, the console's
//! grant, `regate policy explain`, CLI hints): every word that is not made only of safe
//! characters goes in POSIX single quotes, so a subject, namespace or role taken from a token,
//! a form or the state directory is one argument, never code (docs/behaviour.md §5).
//!
//! [`quote`] is the one quoting rule; [`CommandLine`] puts a command's words in an order the
//! CLI parses back into the same values, whatever they start with.

use std::borrow::Cow;
use std::fmt;

/// Whether `word` may stand bare: not empty, and only `[A-Za-z0-9_@%+=:,./-]`, none of which
/// a POSIX shell expands or splits on.
fn is_bare(word: &str) -> bool {
    !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b))
}

/// `word` as one POSIX shell word: bare when it is made only of safe characters
/// (`[A-Za-z0-9_@%+=:,./-]`), else in single quotes with each `'` written `'\''`; the empty
/// word is `''`. Borrowed when it needs no quotes.
pub fn quote(word: &str) -> Cow<'_, str> {
    if is_bare(word) {
        return Cow::Borrowed(word);
    }
    Cow::Owned(Quoted(word).to_string())
}

/// `path` as one shell word, as [`quote`] writes it (a path that is not UTF-8 shown lossily).
pub fn quote_path(path: &std::path::Path) -> String {
    quote(&path.to_string_lossy()).into_owned()
}

/// `word` written as [`quote`] writes it, without a `String` of its own.
#[derive(Clone, Copy, Debug)]
pub struct Quoted<'a>(pub &'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = self.0;
        if is_bare(word) {
            return f.write_str(word);
        }
        // Inside single quotes every byte is literal but `'` itself: end the quotes, write an
        // escaped quote, open them again.
        f.write_str("'")?;
        let mut parts = word.split('\'');
        if let Some(first) = parts.next() {
            f.write_str(first)?;
        }
        for part in parts {
            f.write_str("'\\''")?;
            f.write_str(part)?;
        }
        f.write_str("'")
    }
}

/// One word after the command's fixed words.
#[derive(Clone, Copy, Debug)]
enum Word<'a> {
    /// A positional argument.
    Arg(&'a str),
    /// An option and its value, e.g. `-n NS`.
    Option(&'a str, &'a str),
    /// An option without a value, or a fixed word such as a placeholder (`--to=FILE`).
    Flag(&'a str),
}

/// A command line for people to paste: fixed words (`regate policy add-role-to-user`), then
/// positional arguments, then options, each word quoted by [`quote`].
///
/// Quoting keeps a word whole, but a value starting with `-` would still be read as an option
/// by the CLI: such a positional argument moves after `--` (the options then go first), and
/// such an option value is joined to its option (`--namespace=-x`, `-n=-x`). Built only where
/// a command is shown, never on a request's path unless it is refused.
#[derive(Clone, Debug)]
pub struct CommandLine<'a> {
    command: &'a [&'a str],
    words: Vec<Word<'a>>,
}

impl<'a> CommandLine<'a> {
    /// A command line starting with `command` (the program and its subcommands).
    pub fn new(command: &'a [&'a str]) -> Self {
        CommandLine {
            command,
            words: Vec::new(),
        }
    }

    /// Adds a positional argument.
    pub fn arg(mut self, value: &'a str) -> Self {
        self.words.push(Word::Arg(value));
        self
    }

    /// Adds option `name` (e.g. `-n`) with `value`.
    pub fn option(mut self, name: &'a str, value: &'a str) -> Self {
        self.words.push(Word::Option(name, value));
        self
    }

    /// Adds a word that is neither an argument nor an option's value: a flag, or a
    /// placeholder such as `--docker-server=SERVER`, written after the options.
    pub fn flag(mut self, word: &'a str) -> Self {
        self.words.push(Word::Flag(word));
        self
    }
}

impl CommandLine<'_> {
    /// The positional arguments, in order.
    fn args(&self) -> impl Iterator<Item = &str> {
        self.words.iter().filter_map(|w| match w {
            Word::Arg(value) => Some(*value),
            _ => None,
        })
    }

    /// Writes the options and flags, in order.
    fn write_options(&self, out: &mut Words<'_, '_>) -> fmt::Result {
        for w in &self.words {
            match *w {
                Word::Option(name, value) if value.starts_with('-') => {
                    out.word(format_args!("{}={}", Quoted(name), Quoted(value)))?;
                }
                Word::Option(name, value) => {
                    out.word(Quoted(name))?;
                    out.word(Quoted(value))?;
                }
                Word::Flag(flag) => out.word(Quoted(flag))?,
                Word::Arg(_) => {}
            }
        }
        Ok(())
    }
}

/// Words written with a space between them.
struct Words<'f, 'g> {
    f: &'f mut fmt::Formatter<'g>,
    first: bool,
}

impl Words<'_, '_> {
    fn word(&mut self, text: impl fmt::Display) -> fmt::Result {
        if !std::mem::take(&mut self.first) {
            self.f.write_str(" ")?;
        }
        write!(self.f, "{text}")
    }
}

impl fmt::Display for CommandLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = Words { f, first: true };
        for fixed in self.command {
            out.word(Quoted(fixed))?;
        }
        if self.args().any(|arg| arg.starts_with('-')) {
            // Options first, then `--`: the CLI takes every word after it as an argument.
            self.write_options(&mut out)?;
            out.word("--")?;
            for arg in self.args() {
                out.word(Quoted(arg))?;
            }
            Ok(())
        } else {
            for arg in self.args() {
                out.word(Quoted(arg))?;
            }
            self.write_options(&mut out)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
