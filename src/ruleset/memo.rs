//! A value computed once per build for every key that repeats in it (pods selected by the
//! same policies share their set elements and tier regions). Owns nothing beyond one
//! build or rebuild: a memo must not outlive the graph its values were computed from.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::Hash;
use std::rc::Rc;

pub(super) struct Memo<K, V>(RefCell<HashMap<K, Rc<V>>>);

impl<K, V> Default for Memo<K, V> {
    fn default() -> Self {
        Memo(RefCell::new(HashMap::new()))
    }
}

impl<K: Hash + Eq, V> Memo<K, V> {
    /// The value for `key`, computed by `compute` the first time it is asked for.
    pub(super) fn get_or_compute(&self, key: K, compute: impl FnOnce() -> V) -> Rc<V> {
        if let Some(hit) = self.0.borrow().get(&key) {
            return hit.clone();
        }
        let value = Rc::new(compute());
        self.0.borrow_mut().insert(key, value.clone());
        value
    }
}
