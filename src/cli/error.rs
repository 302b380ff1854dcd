//! The one mapping from an error to an exit code: 2 when the command, the configuration or an
//! input file is wrong (the message names the file, line and field), 1 when something failed at
//! run time (a store, a server). Every error type of the library converts here, so a command
//! body only uses `?`.

use crate::config::allocations::GrantError;
use crate::config::ConfigError;
use crate::cycle::digest::DigestError;
use crate::domain::errors::error_chain as chain;
use crate::pull::files::ImportError;
use crate::quality::QualityError;
use crate::sinks::outbox::SetupError;
use crate::sources::InputError;
use crate::store::StoreError;

/// Why a command failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Bad usage, configuration or input (exit code 2).
    Usage(String),
    /// A runtime failure (exit code 1).
    Runtime(String),
}

impl Failure {
    /// A usage failure from anything printable.
    pub fn usage(e: impl std::fmt::Display) -> Failure {
        Failure::Usage(e.to_string())
    }

    /// A runtime failure from anything printable.
    pub fn runtime(e: impl std::fmt::Display) -> Failure {
        Failure::Runtime(e.to_string())
    }

    /// The exit code.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    /// What to print after `error: `.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

impl From<ConfigError> for Failure {
    fn from(e: ConfigError) -> Failure {
        Failure::Usage(chain(&e))
    }
}

impl From<GrantError> for Failure {
    fn from(e: GrantError) -> Failure {
        Failure::Usage(chain(&e))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Failure {
        Failure::Runtime(chain(&e))
    }
}

impl From<ImportError> for Failure {
    fn from(e: ImportError) -> Failure {
        match e {
            ImportError::Input(InputError::Format(_)) | ImportError::Input(InputError::Io { .. }) => Failure::Usage(chain(&e)),
            ImportError::Store(_) => Failure::Runtime(chain(&e)),
        }
    }
}

impl From<QualityError> for Failure {
    fn from(e: QualityError) -> Failure {
        match e {
            QualityError::Usage(m) => Failure::Usage(m),
            QualityError::Store(s) => s.into(),
        }
    }
}

impl From<DigestError> for Failure {
    fn from(e: DigestError) -> Failure {
        match e {
            DigestError::Usage(m) => Failure::Usage(m),
            DigestError::Store(s) => s.into(),
        }
    }
}

impl From<SetupError> for Failure {
    fn from(e: SetupError) -> Failure {
        match e {
            SetupError::Config(m) => Failure::Usage(m),
            SetupError::Store(s) => s.into(),
        }
    }
}

impl From<crate::daemon::RunError> for Failure {
    fn from(e: crate::daemon::RunError) -> Failure {
        match e {
            crate::daemon::RunError::Config(m) => Failure::Usage(m),
            crate::daemon::RunError::Runtime(m) => Failure::Runtime(m),
        }
    }
}
