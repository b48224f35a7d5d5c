// Builds flights-3m.csv.gz from the public npm package vega-datasets@3.2.1 (file
// data/flights-3m.parquet, BSD-3-Clause, from the U.S. Bureau of Transportation Statistics),
// for machines without ../shared/data. Run by fetch-data.sh inside a scratch npm project.
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet'
import { compressors } from 'hyparquet-compressors'
import { createWriteStream } from 'node:fs'
import { createGzip } from 'node:zlib'

const [input, output] = process.argv.slice(2)
const file = await asyncBufferFromFile(input)
const rows = await parquetReadObjects({ file, compressors })
const gz = createGzip()
gz.pipe(createWriteStream(output))
const iso = (d) => (d instanceof Date ? d : new Date(Number(d))).toISOString()
gz.write('date,delay,distance,origin,destination\n')
for (const r of rows) gz.write(`${iso(r.date)},${r.delay},${r.distance},${r.origin},${r.destination}\n`)
gz.end()
console.error(`wrote ${rows.length} rows to ${output}`)
