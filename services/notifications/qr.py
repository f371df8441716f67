"""The check-in QR code of a confirmation, as a PNG: exactly the symbol `segno.make(token, error="m")`
makes, built faster. Why: segno chooses the data mask by scoring eight masked matrices module by
module in Python, which at fan-out cost more than the rest of an email; here they are scored as
whole integers, a bit per module, by segno's rules. The unit tests compare the two on six hundred
tokens (segno is pinned in pyproject: an upgrade that changed its layout fails them).
"""
import struct
import zlib
from functools import lru_cache
from itertools import chain, zip_longest
from operator import itemgetter

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
    version, error, message = encoded
    layout = _layout(version)
    data = layout.placed(message)
    spread = layout.spread(data)
    # The lowest penalty wins, the lowest mask number among equals (segno's order).
    best = min(range(8), key=lambda mask: (_penalty(layout, spread, mask), mask))
    masked = _fixed_modules(version, error, best) | (data ^ layout.flip[best])
    return format(masked, layout.modules_format).encode().translate(_BITS)


def _encode(token):
    """segno's encoding of the token, the steps of `segno.make(token, error="m")` up to the placement
    in the matrix: (version, error level, the final message's bits as "0"/"1" bytes, interleaved data
    then error correction codewords), or None for a Micro QR code. segno's own placement and masking
    (add_codewords, apply_mask) visit every module in Python; `_Layout` places the bits. The error correction is `_error_words`: segno's make_blocks, by table."""
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
    bits = bytes(buff.getbits())
    codewords = int(bits.translate(_ASCII), 2).to_bytes(len(bits) // 8, "big")
    data_blocks, error_blocks, taken = [], [], 0
    for ec_info in consts.ECC[version][error]:
        words = ec_info.num_total - ec_info.num_data
        for _ in range(ec_info.num_blocks):
            block = codewords[taken:taken + ec_info.num_data]
            taken += ec_info.num_data
            data_blocks.append(block)
            error_blocks.append(_error_words(block, words))
    message = bytes(codeword for blocks in (data_blocks, error_blocks)
                    for codeword in chain.from_iterable(zip_longest(*blocks)) if codeword is not None)
    return version, error, format(int.from_bytes(message, "big"), "0{}b".format(8 * len(message))).encode()


def _error_words(block, words):
    """The block's `words` error correction codewords (segno's make_blocks: the remainder of the
    block times x^words divided by the generator polynomial), with the remainder held in one integer
    and the generator's multiples by every byte looked up."""
    multiples = _generator_multiples(words)
    top = 8 * (words - 1)
    full = (1 << 8 * words) - 1
    remainder = 0
    for codeword in block:
        remainder = ((remainder << 8) & full) ^ multiples[(remainder >> top) ^ codeword]
    return remainder.to_bytes(words, "big")


@lru_cache(maxsize=None)
def _generator_multiples(words):
    """The generator polynomial of `words` error correction codewords times each byte value, as
    integers (highest coefficient first, the leading 1 left out)."""
    log, exp, gen = consts.GALIOS_LOG, consts.GALIOS_EXP, consts.GEN_POLY[words]
    return [0] + [int.from_bytes(bytes(exp[log[value] + g] for g in gen), "big") for value in range(1, 256)]


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
    # A 2 KB window is plenty for an image of a few KB whose rows repeat SCALE times, and much
    # cheaper to set up than the default 32 KB one.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 11, 2)
    return compressor.compress(data) + compressor.flush()


_PIXELS = bytes.maketrans(b"\x00\x01", b"10")


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


# The scoring sees the matrix as one integer per direction, a bit per module, the lines one after
# the other with GAP bits before every line and after the last (no module there): the shifts that
# compare a module with its neighbours then never reach from one line into the next. A gap counts as
# light for N3's four light modules beside a finder-like pattern: segno looks no further than the
# line's end there, as if the quiet zone began.
GAP = 4
_ASCII = bytes.maketrans(b"\x00\x01", b"01")
_BITS = bytes.maketrans(b"01", b"\x00\x01")


class _Layout:
    """Everything about a version's matrix that does not depend on the token: masks as integers, a
    bit per module, in row order (`size`² bits) and spread by rows and by columns (GAP bits before
    every line), and the permutations that place the message's bits and spread the modules."""

    def __init__(self, version):
        size = version * 4 + 17
        self.size = size
        self.stride = size + GAP
        self.length = size * self.stride + GAP
        self.modules_format = "0{}b".format(size * size)
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

        def flat(cells):
            return int("".join(str(int(v)) for row in cells for v in row), 2)

        def columns(cells):
            return [[cells[i][j] for i in range(size)] for j in range(size)]

        self.region = flat(in_region)
        # Mask 0 over the data region: what turns the placed bits into the matrix masked with 0.
        self.flip_from_light = flat(patterns[0])
        self.flip = [flat(cells) for cells in flips]
        self.fixed_rows = self._spread(fixed)
        self.fixed_columns = self._spread(columns(fixed))
        self.flip_rows = [self._spread(cells) for cells in flips]
        self.flip_columns = [self._spread(columns(cells)) for cells in flips]
        ones = [[1] * size] * size
        self.cells = self._spread(ones)
        self.everything = (1 << self.length) - 1
        # Bit i of `pairs` is set where modules i and i + 1 are in one line (shifting left by one
        # moves bit i + 1 to bit i); of `blocks`, where the 2×2 block from module i is in the matrix.
        self.pairs = self.cells & (self.cells << 1)
        self.blocks = self.pairs & (self.pairs << self.stride)
        self.line_bits = [((1 << size) - 1) << (self.length - (start + size))
                          for start in range(GAP, self.length - GAP, self.stride)]
        # Permutations (operator.itemgetter) over a "0"/"1" byte string: the message's bits to the
        # modules in row order, and the modules to the spread rows and columns. The last index
        # points at a "0" appended to the string: what the modules off the message and the gaps take.
        order = _placement(version)
        self.data_modules = len(order)
        source = [len(order)] * (size * size)
        for bit, module in enumerate(order):
            source[module] = bit
        self._message = itemgetter(*source)
        light = size * size
        by_rows = [index for i in range(size) for index in [light] * GAP + list(range(i * size, (i + 1) * size))]
        by_columns = [index for j in range(size) for index in [light] * GAP + list(range(j, size * size, size))]
        self._rows = itemgetter(*(by_rows + [light] * GAP))
        self._columns = itemgetter(*(by_columns + [light] * GAP))

    def _spread(self, lines):
        return int("".join("0" * GAP + "".join(str(int(v)) for v in line) for line in lines) + "0" * GAP, 2)

    def placed(self, message):
        """The data modules, a bit each in row order, once the message's bits ("0"/"1" bytes from
        `_encode`) are placed and masked with mask 0 (the remainder bits are light before masking)."""
        modules = int(bytes(self._message(message + b"0" * (self.data_modules + 1 - len(message)))), 2)
        return (modules & self.region) ^ self.flip_from_light

    def spread(self, data):
        """The data modules spread by rows and by columns, for `_penalty`."""
        modules = format(data, self.modules_format).encode() + b"0"
        return int(bytes(self._rows(modules)), 2), int(bytes(self._columns(modules)), 2)


@lru_cache(maxsize=None)
def _layout(version):
    return _Layout(version)


@lru_cache(maxsize=None)
def _fixed_modules(version, error, mask):
    """The modules outside the data region (function patterns, format and version information) of
    any symbol of this version, error level and mask, a bit each in row order."""
    reference = segno.make("0", version=version, error=error, mask=mask, boost_error=False)
    layout = _layout(version)
    modules = int(b"".join(reference.matrix).translate(_ASCII), 2)
    return modules & ~layout.region


def _penalty(layout, spread, mask):
    """segno's `evaluate_mask` of the matrix masked with `mask` (`spread`: the data modules of the
    matrix masked with 0, by rows and by columns)."""
    rows_data, columns_data = spread
    size = layout.size
    rows = layout.fixed_rows | (rows_data ^ layout.flip_rows[mask])
    columns = layout.fixed_columns | (columns_data ^ layout.flip_columns[mask])
    n1 = n3 = 0
    for dark in (rows, columns):
        # Bit i of `equal` is set where module i equals module i + 1 of its line.
        equal = ~(dark ^ (dark << 1)) & layout.pairs
        # N1: a run of L ≥ 5 modules of one colour scores L − 2: L − 4 bits start five equal
        # modules, plus 2 for the bit where the run starts.
        five = equal & (equal << 1) & (equal << 2) & (equal << 3)
        n1 += five.bit_count() + 2 * (five & ~(equal >> 1)).bit_count()
        # N3: 40 for a finder-like pattern (dark, light, three dark, light, dark) with four light
        # modules (or the line's end) before or after it.
        light = layout.cells ^ dark
        clear = layout.everything ^ dark  # light modules and the gaps
        found = dark & (light << 1) & (dark << 2) & (dark << 3) & (dark << 4) & (light << 5) & (dark << 6)
        overlap = found & ((found << 4) | (found << 6))
        while overlap:
            # Patterns four or six apart overlap, and segno's scan skips the second of a pair it
            # counted: in a line that has such a pair, count as it does; the others below.
            bit = layout.length - overlap.bit_length()
            line = (bit - GAP) // layout.stride
            module_bits = (dark >> (layout.length - (GAP + line * layout.stride + size))) & ((1 << size) - 1)
            n3 += _finder_like_in(format(module_bits, "0{}b".format(size)).encode().translate(_BITS), size)
            found &= ~layout.line_bits[line]
            overlap &= ~layout.line_bits[line]
        before = (clear >> 1) & (clear >> 2) & (clear >> 3) & (clear >> 4)
        after = (clear << 7) & (clear << 8) & (clear << 9) & (clear << 10)
        n3 += 40 * (found & (before | after)).bit_count()
    # N2: 3 for every 2×2 block of one colour: a module equal to its right, lower and lower-right
    # neighbours.
    stride = layout.stride
    differ = (rows ^ (rows << 1)) | (rows ^ (rows << stride)) | (rows ^ (rows << (stride + 1)))
    n2 = 3 * (layout.blocks & ~differ).bit_count()
    # N4: 10 for every 5 % that the dark modules are away from half.
    percent = float(rows.bit_count()) / (size ** 2)
    n4 = 10 * int(abs(percent * 100 - 50) / 5)
    return n1 + n2 + n3 + n4


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
