// importer unpacks every image of an OCI layout into committed snapshots
// named by chain ID, bottom layer first, skipping chains already present,
// and reports progress per layer (rendered by cli/commands/import.ts). Each
// new snapshot carries LABEL_SEED until containerd adopts it.

import fs from 'node:fs';
import type { ApplyResult } from '../apply/applier.js';
import { unpackLayer, type MountApplyOptions, type UnpackTarget } from '../apply/unpack.js';
import { LABEL_SEED } from '../snapshots/labels.js';
import type { Image, ImageLayer } from './oci.js';

/** LayerEvent is reported once per layer, after it was applied or found present. */
export interface LayerEvent {
  image: string;
  index: number;
  count: number;
  layer: ImageLayer;
  skipped: boolean;
  applied?: ApplyResult;
  ms: number;
}

/** ImportSummary totals an import. */
export interface ImportSummary {
  images: { name: string; manifest: string; chainId: string; layers: number }[];
  applied: number;
  skipped: number;
  /** bytes is the uncompressed size of the applied layers. */
  bytes: number;
  ms: number;
}

/** ImportOptions tune importImages. */
export interface ImportOptions extends MountApplyOptions {
  /** onLayerStart is called before a layer is looked at. */
  onLayerStart?: (image: string, index: number, count: number, layer: ImageLayer) => void;
  onLayer?: (e: LayerEvent) => void;
}

/** importImages unpacks the images in order; a chain shared by two images is unpacked once. */
export async function importImages(sn: UnpackTarget, images: Image[], opts: ImportOptions = {}): Promise<ImportSummary> {
  const t0 = Date.now();
  const { onLayer, onLayerStart, ...applyOpts } = opts;
  const sum: ImportSummary = { images: [], applied: 0, skipped: 0, bytes: 0, ms: 0 };
  for (const img of images) {
    let parent = '';
    for (const [i, layer] of img.layers.entries()) {
      applyOpts.signal?.throwIfAborted();
      onLayerStart?.(img.name, i, img.layers.length, layer);
      const t = Date.now();
      const r = await unpackLayer(
        sn,
        {
          parent, chainId: layer.chainId, diffId: layer.diffId, mediaType: layer.descriptor.mediaType,
          open: () => fs.createReadStream(layer.blobPath, { highWaterMark: 1 << 20 }),
          // kept from containerd's GC until an unpack adopts it (see LABEL_SEED)
          labels: { [LABEL_SEED]: img.name || 'import' },
        },
        applyOpts,
      );
      if (r.skipped) sum.skipped++;
      else {
        sum.applied++;
        sum.bytes += r.applied.size;
      }
      onLayer?.({ image: img.name, index: i, count: img.layers.length, layer, skipped: r.skipped, applied: r.skipped ? undefined : r.applied, ms: Date.now() - t });
      parent = layer.chainId;
    }
    sum.images.push({ name: img.name, manifest: img.manifestDigest, chainId: parent, layers: img.layers.length });
  }
  sum.ms = Date.now() - t0;
  return sum;
}
