//! How an error is told: on one line, with each of its causes once ("connection refused"
//! hides in the sources of an HTTP client's error; a cause its parent already quotes is not
//! repeated).

/// An error and its causes, on one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::error_chain;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn each_cause_once() {
        let e = E("request failed", Some(Box::new(E("connect", Some(Box::new(E("connection refused", None)))))));
        assert_eq!(error_chain(&e), "request failed: connect: connection refused");
        let quoted = E("store x: disk full", Some(Box::new(E("disk full", None))));
        assert_eq!(error_chain(&quoted), "store x: disk full");
    }
}
