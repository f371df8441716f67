"""The check-in QR code of a confirmation, as a PNG: the symbol segno makes, in a sixth of segno's time.

Most of `segno.make` is choosing the data mask (ISO/IEC 18004 7.8.3): it masks the matrix eight
times and scores each, module by module in Python, ~2 ms a code, which at fan-out was more than the
rest of an email. Here segno encodes the token (segments, version, error level, error correction:
`_encode`), the bits go to the modules segno's placement gives (found once per version), and the
eight masked matrices are scored as whole byte strings (big-integer shifts and XORs,
`bytes.translate` and `count`) by segno's rules, its edge cases included; the winner differs from
mask 0's matrix only by a known XOR of the data region, plus the format information, taken from a
reference symbol of the same version, error level and mask. The result is the matrix `segno.make`
returns (the unit tests compare them on six hundred tokens of every length), written as a 1-bit PNG.

The layout of the function patterns comes from segno's encoder module (segno is pinned in pyproject:
an upgrade that changed it fails those tests).
"""
import struct
import zlib
from functools import lru_cache
from itertools import chain, zip_longest

import segno
from segno import consts, encoder

SCALE = 4   # pixels per module
BORDER = 2  # modules of quiet zone
ERROR = "m"  # at least; segno raises it when the version has room to spare
_ERROR_M = encoder.normalize_errorlevel(ERROR)

_FINDER_LIKE = b"\x01\x00\x01\x01\x01\x00\x01"
_MASKS = encoder.get_data_mask_functions(False)


def qr_png(token):
    return png(matrix(token))


def matrix(token):
    """The modules of the token's QR code, row by row (1 = dark): what `segno.make(token, error="m")`
    gives, as one bytes object of size × size."""
    encoded = _encode(token)
    if encoded is None:  # a token short enough for a Micro QR code: rare, and cheap anyway
        return b"".join(segno.make(token, error=ERROR).matrix)
    version, error, codewords = encoded
    layout = _layout(version)
    placed = bytearray(layout.size * layout.size)
    for position, bit in zip(_placement(version), "".join(map("{:08b}".format, codewords)).encode()):
        placed[position] = bit & 1  # "0" and "1" are 0x30 and 0x31; remainder bits stay 0
    data = (int.from_bytes(placed, "big") & layout.region) ^ layout.flip_from_light
    spread = _spread(layout, data)
    # The lowest penalty wins, the lowest mask number among equals (segno's order).
    best = min(range(8), key=lambda mask: (_penalty(layout, spread, mask), mask))
    fixed = _fixed_modules(version, error, best)
    return (fixed | (data ^ layout.flip[best])).to_bytes(layout.size * layout.size, "big")


def _encode(token):
    """segno's encoding of the token, the steps of `segno.make(token, error="m")` up to the placement
    in the matrix: (version, error level, the final message's codewords, interleaved data then error
    correction), or None for a Micro QR code. segno's own placement and masking (add_codewords,
    apply_mask) visit every module in Python and were half of its time; `_placement` does it."""
    segments = encoder.prepare_data(token, None, None)
    version = encoder.find_version(segments, _ERROR_M, eci=False, micro=None)
    if version < 1:
        return None
    error = encoder.boost_error_level(version, _ERROR_M, segments, False)
    buff = encoder.Buffer()
    for segment in segments:
        encoder.write_segment(buff, segment, None, encoder.version_range(version), False)
    capacity = consts.SYMBOL_CAPACITY[version][error]
    encoder.write_terminator(buff, capacity, None, len(buff))
    encoder.write_padding_bits(buff, version, len(buff))
    encoder.write_pad_codewords(buff, version, capacity, len(buff))
    data_blocks, error_blocks = encoder.make_blocks(consts.ECC[version][error], buff)
    return version, error, [codeword for blocks in (data_blocks, error_blocks)
                            for codeword in chain.from_iterable(zip_longest(*blocks)) if codeword is not None]


@lru_cache(maxsize=None)
def _placement(version):
    """The modules the final message's bits go to, in order (row-major indexes): found once per
    version by letting segno's add_codewords place the numbers 0, 1, 2, ... (low and high bytes in
    two passes, its matrix holding bytes)."""
    size = version * 4 + 17

    def placed(values):
        matrix = encoder.make_matrix(size, size)
        encoder.add_finder_patterns(matrix, size, size)
        encoder.add_alignment_patterns(matrix, size, size)
        free = b"".join(matrix)
        encoder.add_codewords(matrix, values, version)
        return free, b"".join(matrix)

    free, _ = placed(b"")  # add_codewords wants exactly as many values as free modules
    positions = [index for index, value in enumerate(free) if value == 0x2]
    _, low = placed(bytes(n & 0xFF for n in range(len(positions))))
    _, high = placed(bytes(n >> 8 for n in range(len(positions))))
    order = [0] * len(positions)
    for index in positions:
        order[high[index] << 8 | low[index]] = index
    return tuple(order)


def png(modules):
    """A 1-bit greyscale PNG of a square matrix (1 = dark), SCALE pixels a module, BORDER modules of
    quiet zone."""
    size = int(len(modules) ** 0.5)
    side = (size + 2 * BORDER) * SCALE
    pad = -side % 8
    light_rows = b"\x00" + (b"\xff" * ((side + pad) // 8))
    rows = [light_rows] * (BORDER * SCALE)
    edge = b"1" * (BORDER * SCALE)
    for start in range(0, len(modules), size):
        # In PNG greyscale 1 is white: a dark module is "0000", a light one "1111".
        bits = edge + modules[start:start + size].translate(_PIXELS).replace(b"0", b"0000").replace(
            b"1", b"1111") + edge + b"0" * pad
        row = b"\x00" + int(bits, 2).to_bytes((side + pad) // 8, "big")
        rows += [row] * SCALE
    rows += [light_rows] * (BORDER * SCALE)
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(
        b"IDAT", _deflate(b"".join(rows))) + _chunk(b"IEND", b"")


def _deflate(data):
    # A 2 KB window is plenty for an image of a few KB whose rows repeat SCALE times, and setting up
    # the default 32 KB one took two thirds of the compression's time.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 11, 2)
    return compressor.compress(data) + compressor.flush()


_PIXELS = bytes.maketrans(b"\x00\x01", b"10")


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# Four lanes before every line of modules, and after the last: the scoring's shifts then never
# reach from one line into the next, and the lanes are no colour (2-5, no two alike, so N1 and N2
# see no equal neighbours there), but count as light for N3's four light modules beside a finder-like
# pattern: segno looks no further than the line's end there, as if the quiet zone began.
_GAP = b"\x02\x03\x04\x05"
_PAD = b"\x06"  # past the end, for the neighbours of the last lanes
_EQUAL = bytes([1] + [0] * 255)  # translate: lane is 0 → 1, else 0
_DARK = bytes([0, 1] + [0] * 254)
_LIGHT_OR_GAP = bytes([1, 0, 1, 1, 1, 1] + [0] * 250)


class _Layout:
    """Everything about a version's matrix that does not depend on the token, as big integers over
    the matrix's bytes (one byte per module): in row order, and spread (_GAP before each line) in
    row order and in column order, for the scoring."""

    def __init__(self, version):
        size = version * 4 + 17
        self.size = size
        self.stride = size + len(_GAP)
        self.spread_length = size * self.stride + len(_GAP)
        # The matrix as segno scores it: function patterns set, format and version areas still 0,
        # data modules (0x2 here) to be filled.
        base = encoder.make_matrix(size, size)
        encoder.add_finder_patterns(base, size, size)
        encoder.add_alignment_patterns(base, size, size)
        function = [bytearray(row) for row in base]
        function[-8][8] = 0x1  # the dark module is no data module (what segno checks)
        in_region = [[function[i][j] > 0x1 for j in range(size)] for i in range(size)]
        patterns = [[[bool(_MASKS[mask](i, j)) and in_region[i][j] for j in range(size)] for i in range(size)]
                    for mask in range(8)]
        fixed = [[0 if in_region[i][j] else base[i][j] for j in range(size)] for i in range(size)]
        flips = [[[int(a != b) for a, b in zip(r0, rk)] for r0, rk in zip(patterns[0], pattern)]
                 for pattern in patterns]
        in_region = [[int(v) for v in row] for row in in_region]

        def flat(cells):
            return int.from_bytes(bytes(int(v) for row in cells for v in row), "big")

        def columns(cells):
            return [[cells[i][j] for i in range(size)] for j in range(size)]

        self.region = flat(in_region)
        # Mask 0 over the data region: what turns the placed bits into the matrix masked with 0.
        self.flip_from_light = flat(patterns[0])
        self.flip = [flat(cells) for cells in flips]
        self.fixed_rows = _spread_int(fixed, _GAP)
        self.fixed_columns = _spread_int(columns(fixed), _GAP)
        # Only data modules can be 1 in these: their gaps are 0, the fixed ones' show through.
        self.flip_rows = [_spread_int(cells, bytes(len(_GAP))) for cells in flips]
        self.flip_columns = [_spread_int(columns(cells), bytes(len(_GAP))) for cells in flips]
        self.ones = int.from_bytes(b"\x01" * self.spread_length, "big")
        # Every lane of each line (rows and columns are spread alike).
        self.line_lanes = [int.from_bytes(b"\xff" * size, "big") << 8 * (self.spread_length - (start + size))
                           for start in range(len(_GAP), self.spread_length - len(_GAP), self.stride)]


def _spread_int(lines, gap):
    return int.from_bytes(b"".join(gap + bytes(line) for line in lines) + gap, "big")


@lru_cache(maxsize=None)
def _layout(version):
    return _Layout(version)


@lru_cache(maxsize=None)
def _fixed_modules(version, error, mask):
    """The modules outside the data region (function patterns, format and version information) of
    any symbol of this version, error level and mask."""
    reference = segno.make("0", version=version, error=error, mask=mask, boost_error=False)
    layout = _layout(version)
    outside = int.from_bytes(b"\x01" * (layout.size * layout.size), "big") ^ layout.region
    return int.from_bytes(b"".join(reference.matrix), "big") & outside


def _penalty(layout, spread, mask):
    """segno's `evaluate_mask` of the matrix masked with `mask` (`spread`: the data modules of the
    matrix masked with 0, by rows and by columns)."""
    rows_data, columns_data = spread
    length = layout.spread_length
    size = layout.size
    rows = (layout.fixed_rows | (rows_data ^ layout.flip_rows[mask])).to_bytes(length, "big")
    columns = (layout.fixed_columns | (columns_data ^ layout.flip_columns[mask])).to_bytes(length, "big")
    n1 = n3 = 0
    for lines in (rows, columns):
        here = int.from_bytes(lines, "big")
        # Lane i of `equal` is 1 where module i equals module i + 1 (shifting left by 8 bits moves
        # lane i + 1 to lane i).
        equal = int.from_bytes((here ^ int.from_bytes(lines[1:] + _PAD, "big")).to_bytes(length, "big")
                               .translate(_EQUAL), "big")
        # N1: a run of L ≥ 5 modules of one colour scores L − 2: L − 4 lanes start five equal
        # modules, plus 2 for the lane where the run starts.
        five = equal & (equal << 8) & (equal << 16) & (equal << 24)
        n1 += five.bit_count() + 2 * (five & ((equal >> 8) ^ layout.ones)).bit_count()
        # N3: 40 for a finder-like pattern (dark, light, three dark, light, dark) with four light
        # modules (or the line's end) before or after it.
        dark = int.from_bytes(lines.translate(_DARK), "big")
        light = dark ^ layout.ones  # modules 0 and the gaps; the pattern has no two lights in a row
        clear = int.from_bytes(lines.translate(_LIGHT_OR_GAP), "big")
        found = (dark & (light << 8) & (dark << 16) & (dark << 24) & (dark << 32) & (light << 40)
                 & (dark << 48))
        overlap = found & ((found << 32) | (found << 48))
        while overlap:
            # Patterns four or six apart overlap, and segno's scan skips the second of a pair it
            # counted: in a line that has such a pair, count as it does; the others below.
            lane = length - 1 - (overlap.bit_length() - 1) // 8
            line = (lane - len(_GAP)) // layout.stride
            start = len(_GAP) + line * layout.stride
            n3 += _finder_like_in(lines[start:start + size], size)
            found &= ~layout.line_lanes[line]
            overlap &= ~layout.line_lanes[line]
        before = (clear >> 8) & (clear >> 16) & (clear >> 24) & (clear >> 32)
        after = (clear << 56) & (clear << 64) & (clear << 72) & (clear << 80)
        n3 += 40 * (found & (before | after)).bit_count()
    # N2: 3 for every 2×2 block of one colour: a lane of `same` is 0 where a module equals its
    # right, lower and lower-right neighbours (the gaps and the padding never do).
    stride = layout.stride
    here = int.from_bytes(rows, "big")
    right = int.from_bytes(rows[1:] + _PAD, "big")
    below = int.from_bytes(rows[stride:] + _PAD * stride, "big")
    diagonal = int.from_bytes(rows[stride + 1:] + _PAD * (stride + 1), "big")
    n2 = 3 * ((here ^ right) | (here ^ below) | (here ^ diagonal)).to_bytes(length, "big").count(0)
    # N4: 10 for every 5 % that the dark modules are away from half.
    percent = float(rows.count(1)) / (size ** 2)
    n4 = 10 * int(abs(percent * 100 - 50) / 5)
    return n1 + n2 + n3 + n4


def _spread(layout, data):
    """The data modules spread like the layout's lines, in row order and in column order."""
    size = layout.size
    flat = data.to_bytes(size * size, "big")
    return (_spread_int([flat[i:i + size] for i in range(0, size * size, size)], bytes(len(_GAP))),
            _spread_int([flat[j::size] for j in range(size)], bytes(len(_GAP))))


def _finder_like_in(seq, size):
    # segno.encoder.mask_scores's n3_pattern_occurrences, as it is.
    count = 0
    idx = seq.find(_FINDER_LIKE)
    while idx != -1:
        offset = idx + 7
        if idx in (0, size - 7) or not any(seq[max(idx - 4, 0):min(idx, size)]) \
                or not any(seq[max(offset, 0):min(offset + 4, size)]):
            count += 40
        else:
            offset = idx + 4
        idx = seq.find(_FINDER_LIKE, offset)
    return count
