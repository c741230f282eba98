package krl

// maxBitmapBits is the widest serial bitmap OpenSSH reads: it refuses an
// mpint of more than 2,048 bytes (plus a leading zero byte).
const maxBitmapBits = 16384

// appendSerials appends the serial subsections for rs, which must be
// sorted, disjoint and non-adjacent (see mergeSerials). It walks the runs
// as ssh-keygen does, choosing for each run whether to add it to the
// current subsection or to start a list, a range or a bitmap, by the
// cost model in chooseNext; a bitmap is closed before it grows wider than
// OpenSSH reads.
func appendSerials(b []byte, rs []SerialRange) []byte {
	var (
		state       byte   // type of the open subsection; 0 before the first
		sect        []byte // its body so far
		bits        []byte // the open bitmap, bit i at bits[i/8]&(1<<(i%8))
		bitmapStart uint64
		last        uint64 // last serial of the previous run
	)
	flush := func() {
		if state == certSerialBitmap {
			sect = appendBitmap(sect, bits)
		}
		b = appendSection(b, state, sect)
		sect = sect[:0]
	}
	for i, r := range rs {
		final := i == len(rs)-1
		var nextGap, lastGap uint64
		if !final {
			nextGap = rs[i+1].First - r.Last
		}
		if state != 0 {
			lastGap = r.First - last
		}
		contig := r.Last - r.First + 1
		next, restart := chooseNext(state, contig, final, lastGap, nextGap)
		if next == certSerialBitmap && state == certSerialBitmap && !restart &&
			r.Last-bitmapStart >= maxBitmapBits {
			next, _ = chooseNext(0, contig, final, 0, nextGap)
			restart = true
		}
		if state != 0 && (restart || next != state || state == certSerialRange) {
			flush()
		}
		if next != state || restart {
			state = next
			if state == certSerialBitmap {
				bits = bits[:0]
				bitmapStart = r.First
				sect = appendU64(sect, bitmapStart)
			}
		}
		switch state {
		case certSerialList:
			for s := r.First; ; s++ {
				sect = appendU64(sect, s)
				if s == r.Last {
					break
				}
			}
		case certSerialRange:
			sect = appendU64(appendU64(sect, r.First), r.Last)
		case certSerialBitmap:
			for n := r.First - bitmapStart; n <= r.Last-bitmapStart; n++ {
				for uint64(len(bits)) <= n/8 {
					bits = append(bits, 0)
				}
				bits[n/8] |= 1 << (n % 8)
			}
		}
		last = r.Last
	}
	if state != 0 {
		flush()
	}
	return b
}

// appendBitmap appends bits (least significant byte first) as an SSH
// mpint: big-endian, no leading zero bytes, a zero byte prepended when the
// top bit is set so the number stays positive.
func appendBitmap(b, bits []byte) []byte {
	for len(bits) > 0 && bits[len(bits)-1] == 0 {
		bits = bits[:len(bits)-1]
	}
	n := len(bits)
	pad := n > 0 && bits[n-1]&0x80 != 0
	if pad {
		b = appendU32(b, uint32(n+1))
		b = append(b, 0)
	} else {
		b = appendU32(b, uint32(n))
	}
	for i := n - 1; i >= 0; i-- {
		b = append(b, bits[i])
	}
	return b
}

// chooseNext is ssh-keygen's cost model (OpenSSH's choose_next_state),
// kept identical so that both write the same bytes. Given the
// open subsection type cur (0 for none), a run of contig serials, whether
// it is the last run, and the gaps from the previous run and to the next
// one, it estimates in bits what each choice costs, including its share of
// the next subsection header, and returns the cheapest type and whether a
// new bitmap should start even though one is open.
func chooseNext(cur byte, contig uint64, final bool, lastGap, nextGap uint64) (next byte, restart bool) {
	// The caps keep the sums below from overflowing without changing
	// which choice wins.
	contig = min(contig, 1<<31)
	lastGap = min(lastGap, 1<<31)
	nextGap = min(nextGap, 1<<31)

	// Opening a subsection costs its type byte and, for a bitmap, the
	// offset; a range subsection holds one range, so it always opens one.
	var costList, costBitmap, costRestart uint64
	costRange := uint64(8)
	switch cur {
	case certSerialList:
		costBitmap, costRestart = 8+64, 8+64
	case certSerialBitmap:
		costList, costRestart = 8, 8+64
	default:
		costBitmap, costRestart = 8+64, 8+64
		costList = 8
	}
	var tail, bitmapTail uint64
	if !final {
		tail = 8 + 64
		bitmapTail = min(nextGap, 8+64)
	}
	costList += 64*contig + tail
	costRange += 2*64 + tail
	costBitmap += lastGap + contig + bitmapTail
	costRestart += contig + bitmapTail

	costList, costRange = (costList+7)/8, (costRange+7)/8
	costBitmap, costRestart = (costBitmap+7)/8, (costRestart+7)/8

	next, cost := byte(certSerialBitmap), costBitmap
	if costRange < cost {
		next, cost = certSerialRange, costRange
	}
	if costList < cost {
		next, cost = certSerialList, costList
	}
	if costRestart < cost {
		next, restart = certSerialBitmap, true
	}
	return next, restart
}
