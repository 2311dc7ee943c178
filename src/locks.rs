//! Locking a `std` mutex or read-write lock that another thread may have poisoned.
//!
//! A lock is poisoned when a thread panicked while holding it. The bridge's locks guard
//! plain data (tables, counters, cached state) that every write leaves whole, so a
//! panic elsewhere does not make the data wrong: the right answer is to go on with it
//! rather than to panic again in every later user. [`Unpoisoned`] says that once.
//!
//! Also the one way to open a lock file that processes share ([`open_lock_file`]): the
//! token cache's entries and the hub's start and life locks use it.

use std::{
    fs::{File, OpenOptions},
    os::unix::fs::OpenOptionsExt,
    path::Path,
    sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard},
};

/// Open (creating if needed, 0600) a lock file. Lock files are never truncated or removed:
/// removing one while a process waits on it would let two processes hold "the" lock.
pub fn open_lock_file(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().read(true).write(true).create(true).truncate(false).mode(0o600).open(path)
}

/// Lock a mutex, taking the data of a poisoned one as it is.
pub trait Unpoisoned<T: ?Sized> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T>;
}

impl<T: ?Sized> Unpoisoned<T> for Mutex<T> {
    fn lock_unpoisoned(&self) -> MutexGuard<'_, T> {
        self.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Read or write a read-write lock, taking the data of a poisoned lock as it is.
pub trait UnpoisonedRw<T: ?Sized> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T>;
    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T>;
}

impl<T: ?Sized> UnpoisonedRw<T> for RwLock<T> {
    fn read_unpoisoned(&self) -> RwLockReadGuard<'_, T> {
        self.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write_unpoisoned(&self) -> RwLockWriteGuard<'_, T> {
        self.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex, RwLock};

    use super::{Unpoisoned, UnpoisonedRw};

    #[test]
    fn a_poisoned_lock_still_hands_out_its_data() {
        let mutex = Arc::new(Mutex::new(1));
        let rw = Arc::new(RwLock::new(2));
        let (m, r) = (mutex.clone(), rw.clone());
        let _ = std::thread::spawn(move || {
            let _held = m.lock().expect("not poisoned yet");
            let _written = r.write().expect("not poisoned yet");
            panic!("poison both");
        })
        .join();
        assert!(mutex.is_poisoned() && rw.is_poisoned());
        *mutex.lock_unpoisoned() += 1;
        assert_eq!(*mutex.lock_unpoisoned(), 2);
        *rw.write_unpoisoned() += 1;
        assert_eq!(*rw.read_unpoisoned(), 3);
    }
}
