//! Reading a registry's `WWW-Authenticate` header (RFC 9110 §11.6.1): which scheme it wants and
//! with what parameters.

/// A registry's challenge, from `WWW-Authenticate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    /// Username and password on every request.
    Basic {
        /// The protection space, informational only.
        realm: Option<String>,
    },
    /// A token from `realm`, for `service` and `scope`.
    Bearer {
        /// The token endpoint's URL.
        realm: String,
        /// The `service` to ask the realm a token for.
        service: Option<String>,
        /// The scope the registry named, used when the caller names none.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value: one or more challenges, each a case-insensitive scheme
/// and `name=value` parameters whose values may be quoted (with commas and `\"` inside).
/// Of several challenges, Bearer is preferred over Basic; other schemes are ignored. `None`
/// when the value is malformed or offers neither Basic nor a Bearer with a realm.
pub fn parse_challenge(value: &str) -> Option<Challenge> {
    let mut basic = None;
    for (scheme, params) in parse_challenges(value)? {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(realm) = param("realm").filter(|r| !r.trim().is_empty()) else {
                continue;
            };
            return Some(Challenge::Bearer {
                realm,
                service: param("service"),
                scope: param("scope"),
            });
        }
        if scheme.eq_ignore_ascii_case("basic") && basic.is_none() {
            basic = Some(Challenge::Basic {
                realm: param("realm"),
            });
        }
    }
    basic
}

/// A challenge's scheme and parameters (names as given).
type RawChallenge = (String, Vec<(String, String)>);

/// Splits a `WWW-Authenticate` value into challenges (RFC 9110 §11.6.1); `None` when it is
/// malformed (an unterminated quote, a stray character).
fn parse_challenges(value: &str) -> Option<Vec<RawChallenge>> {
    let mut p = Cursor {
        s: value.as_bytes(),
        pos: 0,
    };
    let mut challenges = Vec::new();
    loop {
        p.skip(b" \t,");
        if p.at_end() {
            break;
        }
        let scheme = p.token()?;
        let mut params = Vec::new();
        loop {
            let before = p.pos;
            p.skip(b" \t,");
            if p.at_end() {
                break;
            }
            let name = p.token()?;
            p.skip(b" \t");
            if p.peek() != Some(b'=') {
                // Not a parameter: the next challenge's scheme.
                p.pos = before;
                break;
            }
            p.pos += 1;
            p.skip(b" \t");
            let value = if p.peek() == Some(b'"') {
                p.quoted()?
            } else {
                p.bare()?
            };
            params.push((name, value));
            p.skip(b" \t");
            if !matches!(p.peek(), None | Some(b',')) {
                return None;
            }
        }
        challenges.push((scheme, params));
    }
    Some(challenges)
}

/// A position in a header value being parsed.
struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip(&mut self, set: &[u8]) {
        while self.peek().is_some_and(|c| set.contains(&c)) {
            self.pos += 1;
        }
    }

    /// A run of bytes that `accept`s, as text; `None` when empty.
    fn run(&mut self, accept: impl Fn(u8) -> bool) -> Option<String> {
        let start = self.pos;
        while self.peek().is_some_and(&accept) {
            self.pos += 1;
        }
        // Runs stop only at ASCII bytes, so the slice is whole UTF-8 characters.
        let text = std::str::from_utf8(&self.s[start..self.pos]).ok()?;
        (!text.is_empty()).then(|| text.to_string())
    }

    /// An RFC 9110 token (a scheme or a parameter name).
    fn token(&mut self) -> Option<String> {
        self.run(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c))
    }

    /// An unquoted parameter value: anything up to a comma or a blank (lenient, as registries
    /// write `realm=https://...` unquoted).
    fn bare(&mut self) -> Option<String> {
        self.run(|c| !b", \t\"".contains(&c))
    }

    /// A quoted string, its `\x` escapes resolved.
    fn quoted(&mut self) -> Option<String> {
        self.pos += 1; // the opening quote
        let mut out = Vec::new();
        loop {
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return String::from_utf8(out).ok();
                }
                b'\\' => {
                    out.push(*self.s.get(self.pos + 1)?);
                    self.pos += 2;
                }
                c => {
                    out.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}
