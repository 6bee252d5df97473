export * from '../dist/testing/jest.js'
