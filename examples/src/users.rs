//! The shop's accounts and catalogue, kept in memory (a real app has a
//! database here; the session only holds the user's id).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything.
    Admin,
    /// Shopping.
    Customer,
}

/// An account.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Its id.
    pub id: u64,
    /// Its email address (the login name).
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Postal address, for accounts created by the sign-up flow.
    pub address: Option<String>,
    /// An Argon2id hash (PHC string); `None` for accounts made by the
    /// sign-up flow, which sets no password.
    #[serde(skip)]
    password_hash: Option<String>,
}

/// The accounts, shared by every request.
#[derive(Clone, Debug)]
pub struct Users(Arc<RwLock<BTreeMap<u64, User>>>);

impl Default for Users {
    fn default() -> Self {
        Self::demo()
    }
}

impl Users {
    /// The two demo accounts: alice (admin) and bob (customer).
    pub fn demo() -> Self {
        // Hashed once per process (Argon2id is slow on purpose); never
        // kept in plain text.
        static SEEDS: std::sync::OnceLock<[String; 2]> = std::sync::OnceLock::new();
        let hashes = SEEDS.get_or_init(|| {
            [
                crate::auth::hash("alice-password"),
                crate::auth::hash("bob-password"),
            ]
        });
        let mut map = BTreeMap::new();
        for ((id, email, name, role), hash) in [
            (1, "alice@example.com", "Alice", Role::Admin),
            (2, "bob@example.com", "Bob", Role::Customer),
        ]
        .into_iter()
        .zip(hashes)
        {
            map.insert(
                id,
                User {
                    id,
                    email: email.into(),
                    name: name.into(),
                    role,
                    address: None,
                    password_hash: Some(hash.clone()),
                },
            );
        }
        Users(Arc::new(RwLock::new(map)))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<u64, User>> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<u64, User>> {
        self.0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The user with this id, if it still exists.
    pub fn get(&self, id: u64) -> Option<User> {
        self.read().get(&id).cloned()
    }

    /// The account of `email` if `password` is its password: the hash is
    /// checked on a blocking thread, and an unknown email costs as much as
    /// a wrong password.
    pub async fn authenticate(&self, email: &str, password: &str) -> Option<User> {
        let user = self
            .read()
            .values()
            .find(|u| u.email.eq_ignore_ascii_case(email))
            .cloned();
        let hash = user.as_ref().and_then(|u| u.password_hash.clone());
        crate::auth::verify_off_thread(hash, password.to_owned())
            .await
            .then_some(user)
            .flatten()
    }

    /// Creates a customer account; `None` if the email is taken.
    pub fn create(&self, name: &str, email: &str, address: String) -> Option<User> {
        let mut map = self.write();
        if map.values().any(|u| u.email.eq_ignore_ascii_case(email)) {
            return None;
        }
        // Random, never "highest + 1": an id is never given to a second
        // account (a deleted account's sessions, or a session from before a
        // restart of this in-memory demo, can never name a new one). Below
        // 2^53, so JavaScript reads it exactly.
        let id = loop {
            let id = rand::random_range(1u64 << 32..1u64 << 53);
            if !map.contains_key(&id) {
                break id;
            }
        };
        let user = User {
            id,
            email: email.into(),
            name: name.into(),
            role: Role::Customer,
            address: Some(address),
            password_hash: None,
        };
        map.insert(id, user.clone());
        Some(user)
    }

    /// Deletes an account. Its sessions end through the app's revocation
    /// list (see `DELETE /api/me`); its id is never given out again.
    pub fn delete(&self, id: u64) -> bool {
        self.write().remove(&id).is_some()
    }
}

/// A product of the catalogue.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Product {
    /// Its id.
    pub id: u32,
    /// Its name.
    pub name: &'static str,
    /// Price in cents.
    pub price_cents: u64,
}

/// The fixed catalogue.
pub const CATALOGUE: [Product; 4] = [
    Product {
        id: 1,
        name: "Green tea",
        price_cents: 450,
    },
    Product {
        id: 2,
        name: "Kettle",
        price_cents: 2999,
    },
    Product {
        id: 3,
        name: "Teapot",
        price_cents: 1899,
    },
    Product {
        id: 4,
        name: "Mug",
        price_cents: 799,
    },
];

/// The product with this id.
pub fn product(id: u32) -> Option<Product> {
    CATALOGUE.iter().copied().find(|p| p.id == id)
}

/// The product a v1 session named (v1 used free-form names: `tea`, `kettle`, ...).
pub fn product_by_name(name: &str) -> Option<Product> {
    let name = name.trim().to_ascii_lowercase();
    CATALOGUE.iter().copied().find(|p| {
        let full = p.name.to_ascii_lowercase();
        full == name || full.rsplit(' ').next() == Some(name.as_str())
    })
}
