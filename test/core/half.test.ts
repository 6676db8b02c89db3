import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../src/core/half.js';

test('f16 decodes normals, subnormals, zero, infinity and NaN', () => {
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(f16ToF32(0xc000), -2);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24); // smallest subnormal
  assert.equal(f16ToF32(0x03ff), 1023 * 2 ** -24); // largest subnormal
  assert.equal(f16ToF32(0x8000), -0);
  assert.equal(f16ToF32(0x7c00), Infinity);
  assert.ok(Number.isNaN(f16ToF32(0x7e00)));
});

test('f16 encoding rounds to nearest even and round-trips every finite value', () => {
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // exactly half an ulp above 1: ties to even (down)
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // ties to even (up)
  assert.equal(f32ToF16(1e6), 0x7c00); // overflow to infinity
  for (let h = 0; h < 0x7c00; h++) {
    assert.equal(f32ToF16(f16ToF32(h)), h, `0x${h.toString(16)}`);
    assert.equal(f32ToF16(-f16ToF32(h)), h | 0x8000);
  }
});

test('bf16 is the upper half of an f32, encoded with round-to-nearest-even', () => {
  assert.equal(bf16ToF32(0x3f80), 1);
  assert.equal(bf16ToF32(0xc040), -3);
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(bf16ToF32(f32ToBf16(Math.PI)), 3.140625);
});
