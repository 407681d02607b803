//! Order books built around the current quote.
//!
//! A book's best levels are the quote itself (the best bid and ask with their
//! quantities); the deeper levels step away from it by one to two "level gaps"
//! (half the typical spread, at least one tick) each, so bids fall strictly
//! and asks rise strictly. Quantities grow with the distance from the touch
//! and follow a slowly changing shape, so consecutive snapshots of one
//! instrument look related rather than redrawn from scratch.

use rand::Rng;
use rand::rngs::StdRng;

use tickwire_model::Level;

use crate::walk::{Grid, lognormal};

/// How much of a level's size shape is kept from one snapshot to the next.
const SHAPE_MEMORY: f64 = 0.7;

/// A quote: the best bid and ask, in ticks, with their quantities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Quote {
    /// Best bid, in ticks (at least 1).
    pub(crate) bid: i64,
    /// Best ask, in ticks (above the bid).
    pub(crate) ask: i64,
    /// Quantity at the best bid.
    pub(crate) bid_quantity: f64,
    /// Quantity at the best ask.
    pub(crate) ask_quantity: f64,
}

/// The slowly changing size profile of one instrument's book.
#[derive(Debug, Clone)]
pub(crate) struct BookShape {
    bids: Vec<f64>,
    asks: Vec<f64>,
}

/// The figures a book is built from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BookScale {
    /// The price grid.
    pub(crate) ticks: Grid,
    /// The quantity grid.
    pub(crate) lots: Grid,
    /// The typical distance between levels, in ticks (at least 1).
    pub(crate) level_gap: i64,
    /// The typical quantity resting at the touch.
    pub(crate) level_quantity: f64,
    /// The typical size of one order.
    pub(crate) order_quantity: f64,
}

impl BookShape {
    /// A shape for books of `depth` levels a side.
    pub(crate) fn new(depth: usize, rng: &mut StdRng) -> Self {
        BookShape {
            bids: (0..depth).map(|_| lognormal(rng, 0.4)).collect(),
            asks: (0..depth).map(|_| lognormal(rng, 0.4)).collect(),
        }
    }

    /// Moves the shape a step: each level keeps most of its size and draws the rest.
    fn evolve(&mut self, rng: &mut StdRng) {
        for m in self.bids.iter_mut().chain(self.asks.iter_mut()) {
            *m = SHAPE_MEMORY * *m + (1.0 - SHAPE_MEMORY) * lognormal(rng, 0.6);
        }
    }

    /// A snapshot of up to `depth` levels a side around `quote`: bids best
    /// (highest) first, asks best (lowest) first.
    ///
    /// Both sides have `depth` levels unless the bids would reach a price of
    /// zero; they then stop at one tick.
    pub(crate) fn build(
        &mut self,
        quote: &Quote,
        scale: &BookScale,
        rng: &mut StdRng,
    ) -> (Vec<Level>, Vec<Level>) {
        self.evolve(rng);
        let mut side = |shape: &[f64], best: i64, best_quantity: f64, sign: i64| {
            let mut levels = Vec::with_capacity(shape.len());
            let mut price = best;
            for (i, m) in shape.iter().enumerate() {
                let quantity = if i == 0 {
                    best_quantity
                } else {
                    price += sign * scale.level_gap * rng.random_range(1..=2);
                    let grow = 1.0 + 0.25 * i as f64;
                    scale
                        .lots
                        .quantity(scale.level_quantity * grow * m * lognormal(rng, 0.3))
                };
                if price < 1 {
                    break;
                }
                let orders = quantity / scale.order_quantity * rng.random_range(0.5..1.5);
                levels.push(Level {
                    price: scale.ticks.value(price),
                    quantity,
                    // Saturating: f64 to u32 casts clamp.
                    orders: (orders.round() as u32).max(1),
                });
            }
            levels
        };
        let bids = side(&self.bids, quote.bid, quote.bid_quantity, -1);
        let asks = side(&self.asks, quote.ask, quote.ask_quantity, 1);
        (bids, asks)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn scale(tick: f64, gap: i64) -> BookScale {
        BookScale {
            ticks: Grid::new(tick),
            lots: Grid::new(0.001),
            level_gap: gap,
            level_quantity: 2.0,
            order_quantity: 0.5,
        }
    }

    #[test]
    fn levels_step_away_from_the_quote() {
        let mut rng = StdRng::seed_from_u64(7);
        let mut shape = BookShape::new(30, &mut rng);
        let quote = Quote {
            bid: 5_800_000,
            ask: 5_800_003,
            bid_quantity: 1.25,
            ask_quantity: 0.5,
        };
        for _ in 0..100 {
            let (bids, asks) = shape.build(&quote, &scale(0.0005, 2), &mut rng);
            assert_eq!((bids.len(), asks.len()), (30, 30));
            assert_eq!(bids[0].price, 2900.0);
            assert_eq!(bids[0].quantity, 1.25);
            assert_eq!(asks[0].price, 2900.0015);
            assert_eq!(asks[0].quantity, 0.5);
            for pair in bids.windows(2) {
                assert!(pair[0].price > pair[1].price, "{bids:?}");
            }
            for pair in asks.windows(2) {
                assert!(pair[0].price < pair[1].price, "{asks:?}");
            }
            for level in bids.iter().chain(&asks) {
                assert!(level.quantity >= 0.001 && level.orders >= 1, "{level:?}");
            }
        }
    }

    #[test]
    fn bids_stop_above_zero() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut shape = BookShape::new(30, &mut rng);
        let quote = Quote {
            bid: 10,
            ask: 11,
            bid_quantity: 1.0,
            ask_quantity: 1.0,
        };
        let (bids, asks) = shape.build(&quote, &scale(0.01, 1), &mut rng);
        assert!(bids.len() < 30 && !bids.is_empty());
        assert!(bids.iter().all(|l| l.price >= 0.01));
        assert_eq!(asks.len(), 30);
    }
}
