"""Segment a photograph by clustering its pixels' colours, then a large tiled image in Zarr.

Run: python examples/image_segmentation.py [--components 8] [--tiles 8] [--out data]

1. A real photograph (scikit-learn's sample image ``china.jpg``; reading it
   needs Pillow, which matplotlib brings): every pixel is an RGB vector, a
   mixture of K Gaussians clusters the colours, and each pixel is painted with
   its component's mean colour. Writes ``segmented_photo.png`` (original left,
   segmentation right).
2. The same photograph tiled ``tiles x tiles`` times into a Zarr image of
   shape (H, W, 3) stored in 512 x 512 tiles, as large rasters (satellite
   scenes, slides) are stored. ``open_array(..., flatten=True)`` reads it as
   pixels x bands without loading it, the fit re-reads it per iteration, and
   the labels are written back to Zarr as an (H, W) image in the same tiles.
"""

import argparse
import time
from pathlib import Path

import dask.array as da
import numpy as np
import zarr
from sklearn.datasets import load_sample_image

from daskgmm import GaussianMixture, open_array
from daskgmm.plot import file_pyplot

TILE = 512


def segment_photo(photo, n_components):
    pixels = photo.reshape(-1, 3).astype(np.float32) / 255
    print(f"fitting K={n_components} to the photo's {pixels.shape[0]:,} pixels (one line per EM pass):")
    gmm = GaussianMixture(n_components, covariance_type="full", random_state=0).fit(pixels, progress=True)
    labels = gmm.predict(pixels)
    segmented = (gmm.means_[labels].reshape(photo.shape) * 255).clip(0, 255).astype(np.uint8)
    print(f"photo {photo.shape[1]}x{photo.shape[0]}: {pixels.shape[0]:,} pixels, K={n_components}, "
          f"{gmm.n_iter_} iterations, converged {gmm.converged_}")
    for k in np.argsort(-gmm.weights_):
        print(f"  colour {np.round(gmm.means_[k] * 255).astype(int)}  {gmm.weights_[k]:6.1%} of pixels")
    return segmented


def save_side_by_side(photo, segmented, path):
    plt = file_pyplot()
    if plt is None:
        return
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax, image, title in zip(axes, (photo, segmented), ("photograph", "segmented by colour")):
        ax.imshow(image)
        ax.set_title(title)
        ax.axis("off")
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)
    print(f"picture: {path}")


def write_tiled_image(photo, tiles, path):
    """The photograph repeated tiles x tiles times, stored as a Zarr image in 512 x 512 tiles."""
    if not path.exists():
        row = da.concatenate([da.from_array(photo)] * tiles, axis=1)
        image = da.concatenate([row] * tiles, axis=0).rechunk((TILE, TILE, 3))
        image.to_zarr(str(path))
    return zarr.open_array(str(path), mode="r")


def segment_large_image(photo, tiles, n_components, folder):
    image = write_tiled_image(photo, tiles, folder / f"tiled_{tiles}x{tiles}.zarr")
    height, width, _ = image.shape
    print(f"\ntiled image {width}x{height} ({height * width:,} pixels, {image.nbytes / 2**20:.0f} MiB "
          f"uint8) in {TILE}x{TILE} tiles")
    pixels = open_array(image, flatten=True) / 255  # lazy: (H*W, 3), read tile row by tile row
    started = time.perf_counter()
    print(f"fitting K={n_components}, the image read tile row by tile row in every pass:")
    gmm = GaussianMixture(n_components, covariance_type="full", random_state=0).fit(pixels, progress=True)
    print(f"fitted in {time.perf_counter() - started:.1f} s: {gmm.n_iter_} iterations, "
          f"converged {gmm.converged_}")
    labels = gmm.predict(pixels).astype(np.uint8).reshape(height, width).rechunk(TILE)
    out = folder / f"tiled_{tiles}x{tiles}_labels.zarr"
    labels.to_zarr(str(out), overwrite=True)
    written = zarr.open_array(str(out), mode="r")
    counts = np.bincount(np.asarray(written[:TILE, :TILE]).ravel(), minlength=n_components)
    print(f"labels written to {out}: shape {written.shape}, chunks {written.chunks}; "
          f"first tile's pixels per component {counts.tolist()}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--components", type=int, default=8)
    parser.add_argument("--tiles", type=int, default=8, help="the large image is the photo tiles x tiles times")
    parser.add_argument("--out", default="data")
    args = parser.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)

    photo = load_sample_image("china.jpg")
    segmented = segment_photo(photo, args.components)
    save_side_by_side(photo, segmented, folder / "segmented_photo.png")
    segment_large_image(photo, args.tiles, args.components, folder)


if __name__ == "__main__":
    main()
