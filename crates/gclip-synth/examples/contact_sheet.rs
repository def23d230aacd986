//! Renders a contact sheet: one row per category, one column per random
//! product, to eyeball the silhouettes.
//!
//! `cargo run -p gclip-synth --example contact_sheet -- OUT.png [SIZE] [COLUMNS] [SEED]`

use gclip_synth::vocab::CATEGORIES;
use gclip_synth::{render_attributes_with_mask, Attributes};
use image::{GenericImage, RgbImage};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let out = args
        .get(1)
        .ok_or("usage: contact_sheet OUT.png [SIZE] [COLUMNS] [SEED]")?;
    let size: u32 = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(64);
    let cols: u32 = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(10);
    let seed: u64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(0);
    let mut sheet = RgbImage::new(size * cols, size * CATEGORIES.len() as u32);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for (row, _) in CATEGORIES.iter().enumerate() {
        for col in 0..cols {
            let attrs = Attributes::random(&mut rng, Some(row), None);
            let (img, _) = render_attributes_with_mask(&attrs, size, &mut rng)?;
            sheet.copy_from(&img, col * size, row as u32 * size)?;
        }
    }
    sheet.save(out)?;
    Ok(())
}
